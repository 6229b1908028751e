"""Models and the registry: `init`, `models`, `promote`, `rollback`, `register`, `reproduce`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.cli.arguments import Subcommands, add_json, open_home
from appliance.cli.output import plain, print_json, say, table, when
from appliance.cli.training import report_registered
from appliance.config import bundled_spec_path
from appliance.errors import InvalidInput

if TYPE_CHECKING:
    from appliance.home import Home
    from appliance.validation.comparison import Comparison


def register(commands: Subcommands) -> None:
    init = commands.add("init", _init, "create the data directory and register a model spec")
    given = init.add_mutually_exclusive_group()
    given.add_argument("--spec", type=Path, default=None, help="model spec (default: the bundled sample)")
    given.add_argument(
        "--from",
        dest="source",
        type=Path,
        default=None,
        metavar="FILE",
        help="draft a spec and a data contract from a CSV/Parquet file or folder, then register it",
    )
    init.add_argument("--target", default=None, metavar="COLUMN", help="--from: the column to predict")
    init.add_argument(
        "--task",
        default=None,
        choices=("binary", "multiclass", "regression"),
        help="--from: what the model predicts (default: guessed from the target's values)",
    )
    init.add_argument(
        "--positive",
        default=None,
        metavar="VALUE",
        help="--from: which of a text target's two values is the positive class, e.g. 'bad' (default: refused "
        "unless plain, as yes of yes/no); the model gives its probability and the answers say the values",
    )
    init.add_argument(
        "--time",
        default=None,
        metavar="COLUMN",
        help="--from: the event-time column (default: the first column of times)",
    )
    init.add_argument(
        "--time-format",
        default=None,
        metavar="FORMAT",
        help="--from: how the file's text times are spelled when not ISO 8601, e.g. '%%d/%%m/%%Y %%H:%%M' "
        "(default: ISO 8601, or day-first/month-first where a day above 12 settles it); written to the contract",
    )
    init.add_argument(
        "--entity", default=None, metavar="COLUMN", help="--from: the entity key (default: none, each row stands alone)"
    )
    init.add_argument("--name", default=None, help="--from: the model's name (default: from the file's name)")
    init.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="--from: the folder the spec and contract are written to (default: the current one)",
    )

    models = commands.add("models", _models, "list models, or one model's versions")
    models.add_argument("model", nargs="?", help="show this model's versions, gates and metrics")
    add_json(
        models,
        "the models (name, spec_path, production, candidate, versions); with MODEL, that model with "
        "version_list (each version's status, alias, metrics, params, gate_report, lineage, created_at) and "
        "against_production (each other version's comparison on the same rows, or why not_compared)",
    )

    promote = commands.add(
        "promote", _promote, "point a model's production alias at a version", model="a registered model"
    )
    promote.add_argument("version", type=int, help="the version to serve (see `appliance models MODEL`)")
    promote.add_argument("--reason", default="", help="why (goes into the audit log)")
    promote.add_argument(
        "--override", action="store_true", help="promote a version that failed its gates (needs --reason; audited)"
    )

    rollback = commands.add(
        "rollback", _rollback, "return production to the previous version", model="a registered model"
    )
    rollback.add_argument("--reason", default="", help="why (goes into the audit log)")

    elsewhere = commands.add(
        "register", _register, "register a model trained elsewhere (ONNX, or a LightGBM model file) through the gates"
    )
    elsewhere.add_argument("model", help="a model registered with `appliance init --spec`")
    model_file = elsewhere.add_mutually_exclusive_group(required=True)
    model_file.add_argument(
        "--onnx",
        type=Path,
        metavar="FILE",
        help="an ONNX model taking one float32 input 'features' [rows, F] (the spec's features "
        "in order, categories as codes) and giving 'probabilities' [rows, 2] (binary), "
        "[rows, K] (multiclass) or 'value' [rows, 1] (regression); no parity gate applies",
    )
    model_file.add_argument(
        "--lightgbm",
        type=Path,
        metavar="FILE",
        help="a LightGBM model text file (booster.save_model) whose objective fits the spec's "
        "task, converted to ONNX here; "
        "parity of ONNX with LightGBM is a gate",
    )
    elsewhere.add_argument(
        "--eval",
        type=Path,
        default=None,
        metavar="DATA",
        help="labelled CSV/Parquet events, checked against the data contract, that score it "
        "(default: the last [training] eval_days days of the ingested snapshots)",
    )
    elsewhere.add_argument(
        "--categories",
        type=Path,
        default=None,
        metavar="FILE.json",
        help='each category feature\'s values in code order, {"color": ["red", "green"]}, coding every '
        "value the data contract allows; without it each is the contract's allowed_values, sorted as "
        "training sorts them, or where the contract lists none, the distinct values, sorted, of the ingested "
        "days before the held-out ones (never of the --eval rows)",
    )
    elsewhere.add_argument("--reason", default="", help="why (goes into the audit log)")

    reproduce = commands.add(
        "reproduce",
        _reproduce,
        "retrain a version from its recorded data, params, seed and code; report the differences",
        model="a registered model",
    )
    reproduce.add_argument("version", type=int, help="the version to retrain (see `appliance models MODEL`)")


def _init(args: argparse.Namespace) -> int:
    from appliance.spec import load_spec

    if args.source is not None:
        return _init_from(args)
    drafting = [
        flag
        for flag in ("target", "task", "positive", "time", "time_format", "entity", "name", "out")
        if getattr(args, flag) is not None
    ]
    if drafting:
        raise InvalidInput(
            f"{', '.join('--' + f.replace('_', '-') for f in drafting)} {'go' if len(drafting) > 1 else 'goes'} "
            "with --from FILE (drafting a spec from data)"
        )
    with open_home(args, must_exist=False) as home:
        spec = load_spec(args.spec or bundled_spec_path())
        _refuse_another_spec(home, spec.name, spec.path)
        added = home.add_model(spec, actor="cli")
        print(f"data directory {home.root}")
        print(f"model '{spec.name}' {'registered' if added else 'already registered'} from {spec.path}")
    return 0


def _refuse_another_spec(home: Home, name: str, path: Path | None) -> None:
    """A model registered from one spec file is not re-pointed at another by `init --spec`: the other file
    may be another model's spec under the same name, which its versions were never trained from."""
    from appliance.errors import Conflict

    registered = {m.name: m.spec_path for m in home.registry.models()}.get(name)
    if registered is None or registered == str(path):
        return
    gone = "" if Path(registered).exists() else f" ({registered} no longer exists: put the spec back there)"
    raise Conflict(
        f"model '{name}' is registered from {registered}, not {path}; nothing changed — to change this "
        f"model's spec, edit {registered}{gone}; for another model, give {path} its own [model] name"
    )


def _init_from(args: argparse.Namespace) -> int:
    from appliance.data.drafting import draft_model, write_draft
    from appliance.errors import Conflict
    from appliance.spec import load_spec

    if args.target is None:
        raise InvalidInput("--from needs --target COLUMN: the column the model predicts")
    draft = draft_model(
        args.source,
        args.target,
        args.out or Path.cwd(),
        time=args.time,
        entity=args.entity,
        name=args.name,
        task=args.task,
        time_format=args.time_format,
        positive=args.positive,
    )
    with open_home(args, must_exist=False) as home:
        known = {m.name: m.spec_path for m in home.registry.models()}
        if draft.name in known:
            raise Conflict(
                f"model '{draft.name}' is already registered (spec {known[draft.name]}); nothing was "
                "written — pass --name NAME for a new model"
            )
        for line in draft.assumptions:
            print(f"assumed {line}")
        write_draft(draft)
        print(f"wrote {draft.spec_path} and {draft.contract_path}: read them and edit what the data could not tell")
        spec = load_spec(draft.spec_path)
        home.add_model(spec, actor="cli")
        print(f"data directory {home.root}")
        print(f"model '{spec.name}' registered from {spec.path}; next: `appliance train {spec.name}`")
    return 0


def _models(args: argparse.Namespace) -> int:
    from appliance.task import SUMMARY, metric_label  # numpy comes with it: not for a bare listing or --help

    with open_home(args) as home:
        if args.model is None:
            summaries = home.registry.models()
            if args.json:
                print_json(summaries)
                return 0
            table(
                ("MODEL", "PRODUCTION", "CANDIDATE", "VERSIONS"),
                [(m.name, _v(m.production), _v(m.candidate), str(m.versions)) for m in summaries],
            )
            if not summaries:
                print("no models yet — run `appliance init` or `appliance up`")
            return 0
        summary = home.registry.model(args.model)
        versions = home.registry.versions(args.model)
        aliases = {summary.production: "production", summary.candidate: "candidate"}
        compared = _against_production(home, args.model, summary.production)
        task = home.spec(args.model).target.task
        from appliance.serving.models import provider_line  # ONNX Runtime: not for a bare listing

        provider = provider_line(home, args.model, summary.production)
    if args.json:
        print_json(
            plain(summary)
            | {
                "version_list": [plain(v) | {"alias": aliases.get(v.version)} for v in versions],
                "against_production": [
                    {"version": version, "comparison": None, "not_compared": found}
                    if isinstance(found, str)
                    else {"version": version, "comparison": found, "not_compared": None}
                    for version, found in compared
                ],
            }
        )
        return 0
    first, second = SUMMARY[task]
    rows = []
    for v in versions:
        failed = [c["name"] for c in v.gate_report.get("checks", []) if not c["passed"]]
        rows.append(
            (
                f"v{v.version}",
                v.status + (f" ({', '.join(failed)})" if failed else ""),
                aliases.get(v.version, ""),
                f"{v.metrics.get(first, float('nan')):.4f}",
                f"{v.metrics.get(second, float('nan')):.3f}",
                v.data_version[:12],
                v.code_version[:16],
                v.run_id[:8],
                when(v.created_at),
            )
        )
    table(
        (
            "VERSION",
            "STATUS",
            "ALIAS",
            metric_label(first).upper(),
            metric_label(second).upper(),
            "DATA",
            "CODE",
            "RUN",
            "CREATED",
        ),
        rows,
    )
    print(
        f"{metric_label(first)} and {metric_label(second)}: each version on its own evaluation rows, which "
        "differ between versions trained at different times"
    )
    print(provider)
    if compared:
        print(f"against production v{summary.production}, on the same rows:")
    for version, found in compared:
        if isinstance(found, str):
            print(f"  v{version}: not compared — {found}")
        else:
            print(f"  {found.line()}" + (f"; {found.note}" if found.note else ""))
    return 0


def _against_production(home: Home, model: str, production: int | None) -> list[tuple[int, Comparison | str]]:
    """Each other version against production, both scored on the same rows; where it could not be, why."""
    from appliance.errors import ApplianceError
    from appliance.validation.comparison import LabelledTraffic, compare_with_production

    others = [v.version for v in home.registry.versions(model) if v.version != production]
    if production is None or not others:
        return []
    traffic = LabelledTraffic(home, home.spec(model))
    compared: list[tuple[int, Comparison | str]] = []
    for version in others:
        try:
            compared.append((version, compare_with_production(home, model, version, production, traffic)))
        except ApplianceError as e:
            compared.append((version, str(e)))
    return compared


def _promote(args: argparse.Namespace) -> int:
    with open_home(args) as home:
        before = home.registry.alias(args.model, "production")
        v = home.registry.promote(args.model, args.version, actor="cli", reason=args.reason, override=args.override)
        print(f"{v.model}: production is now v{v.version} (was {_v(before)}); a running server swaps within a second")
        if v.status == "rejected":
            print(f"{v.model}: v{v.version} failed its gates; this override is in the audit log")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    with open_home(args) as home:
        v = home.registry.rollback(args.model, actor="cli", reason=args.reason)
        print(f"{v.model}: rolled back from v{v.rolled_back_from} to v{v.version}")
        if (d := v.ended_deployment) is not None:
            print(
                f"{v.model}: {d.strategy} deployment {d.id} of v{d.candidate_version} ended with the rollback "
                f"({d.status.replace('_', ' ')}: {d.reason}); start a new one with `appliance deploy {v.model} start`"
            )
    return 0


def _register(args: argparse.Namespace) -> int:
    from appliance.training.registration import register_model

    with open_home(args) as home:
        result = register_model(
            home,
            args.model,
            onnx=args.onnx,
            lightgbm=args.lightgbm,
            eval_data=args.eval,
            categories=args.categories,
            reason=args.reason,
            actor="cli",
            say=say,
        )
    what, _, digest = result.source.rpartition(" ")
    return report_registered(result.version, result.gates, source=f" from {what} {digest[:12]}")


def _reproduce(args: argparse.Namespace) -> int:
    from appliance.training.reproduce import reproduce

    with open_home(args) as home:
        result = reproduce(home, args.model, args.version, say=say)
    table(
        ("METRIC", "RECORDED", "REPRODUCED", "DIFFERENCE"),
        [(m.name, f"{m.recorded:.6g}", f"{m.reproduced:.6g}", f"{m.difference:+.3g}") for m in result.metrics],
    )
    if result.identical:
        print(
            f"{result.model} v{result.version}: identical — same ONNX bytes ({result.reproduced_onnx[:12]}) "
            f"(run {result.run_id[:8]})"
        )
    else:
        print(
            f"{result.model} v{result.version}: different ONNX bytes ({result.recorded_onnx[:12]} → "
            f"{result.reproduced_onnx[:12]}); largest metric difference {result.max_difference:.3g} "
            f"(run {result.run_id[:8]})"
        )
    return 0


def _v(version: int | None) -> str:
    return f"v{version}" if version is not None else "-"
