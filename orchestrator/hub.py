"""The only huggingface_hub user: the model card's results block, its `model-index` and plots.

The card keeps its own text: orch owns only what lies between the README markers
(`markers.replace_block`, appended in a Results section when absent) and the plots that block
links (`plots/...` in the Hub repo, uploaded in the same commit, so every image link resolves).
`model-index` holds one entry per (table, method, metric) of the evaluated model; orch's own
entries (`by: orch` in their args, or the `CER (method, n=N)` names older versions wrote) are
replaced as a whole on every publish, never accumulated; entries orch did not write are kept.
An entry's key is the dataset (name, split, revision: never a host path), the metric, the
table and method (`quickwin/beam`: two playbooks with a method of the same name never collide)
and the evaluated model (base + adapters with their content hash); a changed value under the
same key needs `overwrite`. Only files whose bytes differ from the Hub's are uploaded:
publishing the same results again uploads nothing.

`prepare_card` does every check that can fail (token, repository exists and is writable,
conflicting values) and reads the card's revision, before publish changes anything locally;
`upload_card` commits with `parent_commit` set to that revision, so a concurrent edit on the Hub
is never overwritten. The token comes from HF_TOKEN or the huggingface_hub login and is never
printed or stored. `HF_ENDPOINT` points the client at another Hub (tests use a local server).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from . import markers, readme
from .errors import PublishError

TASK = ("image-to-text", "Optical Character Recognition")
METRICS = (("cer", "CER"), ("wer", "WER"))
SOURCE = "orch"
PLOTS = "plots"  # the folder of the Hub repo that holds the card's plots
_OLD_ORCH_NAME = re.compile(r"^(CER|WER) \(.+, n=\d+\)$")  # entries of orch before 0.x


@dataclass(frozen=True)
class CardPlan:
    """What an upload would do (for --dry-run and the final report)."""

    repo_id: str
    repo_type: str
    entries: list[tuple[str, str, float]]  # (table/method, metric type, value)
    create_pr: bool


@dataclass(frozen=True)
class CardUpload:
    """What the Hub answered (`url` is None when nothing needed uploading)."""

    url: str | None
    revision: str | None
    pull_request: str | None
    files: list[str] = field(default_factory=list)


@dataclass
class PreparedCard:
    """The Hub's state read by `prepare_card`, and the card to write on top of it."""

    repo_id: str
    repo_type: str
    revision: str | None
    old_text: str | None
    old_files: dict[str, bytes | None]  # path in the repo -> its bytes on the Hub (None: absent)
    data: object  # huggingface_hub ModelCardData of the current card
    kept: list  # EvalResults orch did not write
    body: str  # the card's body with orch's block
    links: dict[str, str]  # README-relative plot link -> path in the Hub repo
    create_pr: bool
    api: object = None


def dataset_identity(data: dict) -> tuple[str, str | None, str | None]:
    """(name, split, revision) of a run's `run.data`: a Hub dataset keeps its id, a local folder
    is named by its last component (a host path is never published)."""
    name = readme.public_name(data.get("source") or "unknown")
    revision = data.get("revision")
    return name, data.get("split"), str(revision) if revision else None


def model_identity(run: dict) -> str:
    """`base + adapter@hash, …` of a run's `run.model` (last path component of local paths)."""
    model = run.get("model") if isinstance(run.get("model"), dict) else {}
    base = readme.public_name(model.get("base") or "unknown")
    parts = [
        f"{a['name']}@{a['sha256'][:8]}" if a.get("sha256") else a["name"]
        for a in readme.adapters_of(run)
    ]
    return " + ".join([base, *parts])


def table_key(table: readme.RunTable) -> str:
    """The name a table's entries carry in `model-index` (`metric.config` is `<key>/<method>`)."""
    return table.key


def eval_results(tables, source_url: str | None) -> list:
    """One CER and one WER `EvalResult` per method with rates of each table: the corpus value
    (model-index has no interval field), `n`, the model and the run in the metric's args."""
    from huggingface_hub import EvalResult

    out = []
    for t in tables:
        run = t.results.get("run", {})
        name, split, revision = dataset_identity(run.get("data") or {})
        for method in t.methods:
            body = t.results[method]
            if body.get("cer") is None:
                continue
            for key, label in METRICS:
                out.append(
                    EvalResult(
                        task_type=TASK[0],
                        task_name=TASK[1],
                        dataset_type=name,
                        dataset_name=name,
                        dataset_split=split,
                        dataset_revision=revision,
                        metric_type=key,
                        metric_name=f"{label} ({table_key(t)}/{method}, n={body['n']})",
                        metric_config=f"{table_key(t)}/{method}",
                        metric_value=round(float(body[key]), 4),
                        metric_args={
                            "n": body["n"],
                            "model": model_identity(run),
                            "run": t.run_id,
                            "by": SOURCE,
                        },
                        source_name=SOURCE if source_url else None,
                        source_url=source_url,
                    )
                )
    return out


def is_ours(r) -> bool:
    """Whether an EvalResult was written by orch (and so is replaced on every publish)."""
    by = r.metric_args.get("by") if isinstance(r.metric_args, dict) else None
    return (
        by == SOURCE or r.source_name == SOURCE or bool(_OLD_ORCH_NAME.match(r.metric_name or ""))
    )


def _key(r) -> tuple:
    model = (r.metric_args or {}).get("model") if isinstance(r.metric_args, dict) else None
    return (
        r.task_type,
        r.dataset_name,
        r.dataset_split,
        r.dataset_revision,
        r.metric_type,
        r.metric_config,
        model,
    )


def merge_results(old: list, new: list, overwrite: bool) -> list:
    """Entries orch did not write, then ours (all of them replaced); a changed value under the
    same key needs `overwrite`."""
    by_key = {_key(r): r for r in new}
    conflicts = [
        f"{r.metric_name or r.metric_type} on {r.dataset_name}: published {r.metric_value}, "
        f"new {by_key[_key(r)].metric_value}"
        for r in old
        if is_ours(r) and _key(r) in by_key and r.metric_value != by_key[_key(r)].metric_value
    ]
    if conflicts and not overwrite:
        raise PublishError(
            f"hub: {len(conflicts)} published value(s) would change ({conflicts[0]}); "
            "pass --overwrite to replace them; nothing was changed"
        )
    return [r for r in old if not is_ours(r)] + new


def card_tables(tables: list[readme.RunTable], links: dict[str, str]) -> list[readme.RunTable]:
    """The tables with each plot link (README-relative) replaced by its path in the Hub repo
    (`links`: local link -> Hub path, e.g. `plots/quickwin.png`)."""
    return [
        replace(
            t,
            plot_link=links.get(t.plot_link),
            history_link=links.get(t.history_link),
            report_link=None,  # the report stays in the git repository
        )
        for t in tables
    ]


def card_body(old_body: str | None, block: str, title: str) -> str:
    """The card's own text with orch's results block (a new card gets a title)."""
    text = old_body if old_body is not None else f"# {title}\n\n"
    try:
        return markers.replace_block(text, block)
    except markers.MarkerError as exc:
        raise PublishError(f"hub: the model card's results markers: {exc}") from None


def _api():
    from huggingface_hub import HfApi, get_token

    token = get_token()
    if not token:
        raise PublishError(
            "hub: no Hugging Face token: set HF_TOKEN or run `hf auth login` (or pass --no-hub); "
            "nothing was changed"
        )
    return HfApi(token=token)


def _hub_error(repo_id: str, exc: Exception, when: str) -> PublishError:
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    if isinstance(exc, RepositoryNotFoundError):
        return PublishError(f"hub: repository {repo_id} not found or not yours; create it first")
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, HfHubHTTPError) and status in (401, 403):
        return PublishError(f"hub: the token may not write to {repo_id} (HTTP {status})")
    if isinstance(exc, HfHubHTTPError) and status in (409, 412):
        return PublishError(f"hub: {repo_id} changed on the Hub while publishing")
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return PublishError(f"hub: {when} {repo_id} failed ({reason})")


def _download(api, repo_id: str, repo_type: str, path: str, revision: str) -> bytes:
    local = api.hf_hub_download(repo_id, path, repo_type=repo_type, revision=revision)
    with open(local, "rb") as f:
        return f.read()


def prepare_card(
    repo_id: str,
    repo_type: str,
    tables: list[readme.RunTable],
    links: dict[str, str],
    create_pr: bool = False,
    overwrite: bool = False,
) -> PreparedCard:
    """Check the token, that `repo_id` exists and is writable, read its card and plots, and
    check that no published value would change (unless `overwrite`). Changes nothing."""
    from huggingface_hub import ModelCard, ModelCardData

    api = _api()
    hub_tables = card_tables(tables, links)
    try:
        api.auth_check(repo_id, repo_type=repo_type, write=True)
        info = api.repo_info(repo_id, repo_type=repo_type)
        present = {s.rfilename for s in info.siblings or []}
        old_files = {
            path: _download(api, repo_id, repo_type, path, info.sha) if path in present else None
            for path in ["README.md", *links.values()]
        }
    except Exception as exc:  # noqa: BLE001 - HTTP, network and parse errors: one clear line
        raise PublishError(f"{_hub_error(repo_id, exc, 'reading')}; nothing was changed") from None
    old_text = old_files.pop("README.md")
    old_text = old_text.decode("utf-8") if old_text is not None else None
    card = ModelCard(old_text) if old_text else None
    data = card.data if card else ModelCardData()
    old = data.eval_results or []
    merge_results(old, eval_results(hub_tables, None), overwrite)  # refuses before any change
    title = repo_id.rsplit("/", 1)[-1]
    body = card_body(card.text if card else None, readme.render_block(hub_tables), title)
    return PreparedCard(
        repo_id,
        repo_type,
        info.sha,
        old_text,
        old_files,
        data,
        [r for r in old if not is_ours(r)],
        body,
        links,
        create_pr,
        api,
    )


def render_card(prep: PreparedCard, tables, source_url: str | None) -> str:
    """The card: its metadata with orch's model-index entries, then its body with the block."""
    data = prep.data
    hub_tables = card_tables(tables, prep.links)
    data.eval_results = prep.kept + eval_results(hub_tables, source_url)
    data.model_name = data.model_name or prep.repo_id.rsplit("/", 1)[-1]
    return f"---\n{data.to_yaml()}\n---\n{prep.body}"


def upload_card(prep: PreparedCard, card: str, pngs: dict[str, bytes], message: str) -> CardUpload:
    """Commit the card and the plots whose bytes differ from the Hub's (`pngs`: Hub path ->
    bytes), on top of the revision `prepare_card` read; nothing when nothing differs."""
    from huggingface_hub import CommitOperationAdd

    changed = {"README.md": card.encode("utf-8")} if card != prep.old_text else {}
    changed |= {p: b for p, b in pngs.items() if prep.old_files.get(p) != b}
    if not changed:
        return CardUpload(None, prep.revision, None)
    try:
        commit = prep.api.create_commit(
            repo_id=prep.repo_id,
            repo_type=prep.repo_type,
            operations=[CommitOperationAdd(p, b) for p, b in sorted(changed.items())],
            commit_message=message,
            parent_commit=prep.revision,
            create_pr=prep.create_pr,
        )
    except Exception as exc:  # noqa: BLE001 - HTTP, network and parse errors: one clear line
        raise _hub_error(prep.repo_id, exc, "upload to") from None
    return CardUpload(commit.commit_url, commit.oid, commit.pr_url, sorted(changed))


def upload_adapter(
    repo_id: str,
    repo_type: str,
    files: dict,
    body: str,
    tables,
    base_model: str | None,
    create_pr: bool = False,
    message: str = "Add LoRA adapter",
) -> str:
    """One commit: the adapter `files` (name -> local path) and a README.md card with `body`,
    the base model, `library_name: peft` and the tables' CER/WER in `model-index`."""
    from huggingface_hub import CommitOperationAdd, ModelCardData

    api = _api()
    data = ModelCardData(base_model=base_model, library_name="peft", tags=["lora", "ocr"])
    data.eval_results = eval_results(tables, None) or None
    data.model_name = repo_id.rsplit("/", 1)[-1]
    card = f"---\n{data.to_yaml()}\n---\n{body}"
    ops = [CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode("utf-8"))]
    ops += [CommitOperationAdd(path_in_repo=n, path_or_fileobj=str(p)) for n, p in files.items()]
    try:
        commit = api.create_commit(
            repo_id, ops, commit_message=message, repo_type=repo_type, create_pr=create_pr
        )
    except Exception as exc:  # noqa: BLE001 - HTTP, network errors: one clear line
        raise _hub_error(repo_id, exc, "upload to") from None
    return commit.pr_url or commit.commit_url
