"""The only huggingface_hub user: the model card with `model-index` CER/WER, and its upload.

`publish_card()` reads the card's current revision from the Hub, merges our CER/WER results into
its `model-index` (keeping every other metadata field and every result we do not own), refuses
to change an already published value unless `overwrite`, and uploads README.md with
`parent_commit` set to the revision it read, so a concurrent edit on the Hub is never overwritten.
The token comes from HF_TOKEN or the huggingface_hub login and is never printed or stored.
`HF_ENDPOINT` points the client at another Hub (tests use a local server).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import PublishError

TASK = ("image-to-text", "Optical Character Recognition")
METRICS = (("cer", "CER"), ("wer", "WER"))


@dataclass(frozen=True)
class CardPlan:
    """What an upload would do (for --dry-run and the final report)."""

    repo_id: str
    repo_type: str
    entries: list[tuple[str, str, float]]  # (method, metric type, value)
    create_pr: bool


@dataclass(frozen=True)
class CardUpload:
    """What the Hub answered."""

    url: str
    revision: str | None
    pull_request: str | None


def eval_results(tables, source_url: str | None) -> list:
    """One CER and one WER `EvalResult` per method of each run with rates: the corpus point
    value (model-index has no interval field) with the number of lines `n` in the metric's
    name and args. A method with no scored sample (null rates) is left out."""
    from huggingface_hub import EvalResult

    out = []
    for t in tables:
        data = t.results.get("run", {}).get("data", {})
        dataset = str(data.get("source", "unknown"))
        for method in t.methods:
            body = t.results[method]
            if body.get("cer") is None:
                continue
            for key, label in METRICS:
                out.append(
                    EvalResult(
                        task_type=TASK[0],
                        task_name=TASK[1],
                        dataset_type=dataset,
                        dataset_name=dataset.rstrip("/").rsplit("/", 1)[-1],
                        dataset_split=data.get("split"),
                        dataset_revision=data.get("revision"),
                        metric_type=key,
                        metric_name=f"{label} ({method}, n={body['n']})",
                        metric_config=method,
                        metric_value=round(float(body[key]), 4),
                        metric_args={"n": body["n"]},
                        source_name="orch" if source_url else None,
                        source_url=source_url,
                    )
                )
    return out


def _key(r) -> tuple:
    return (r.task_type, r.dataset_type, r.dataset_split, r.metric_type, r.metric_config)


def merge_results(old: list, new: list, overwrite: bool) -> list:
    """Old results with ours replaced or added; a changed published value needs `overwrite`."""
    by_key = {_key(r): r for r in new}
    conflicts = [
        f"{r.metric_name or r.metric_type} on {r.dataset_name}: published {r.metric_value}, "
        f"new {by_key[_key(r)].metric_value}"
        for r in old
        if _key(r) in by_key and r.metric_value != by_key[_key(r)].metric_value
    ]
    if conflicts and not overwrite:
        raise PublishError(
            f"hub: {len(conflicts)} published value(s) would change ({conflicts[0]}); "
            "pass --overwrite to replace them"
        )
    kept = [r for r in old if _key(r) not in by_key]
    return kept + new


def render_card(data, body: str, results: list, model_name: str) -> str:
    """The card: the old card's metadata (`ModelCardData`) with the merged model-index, then
    `body`."""
    data.eval_results = results
    data.model_name = data.model_name or model_name
    return f"---\n{data.to_yaml()}\n---\n{body}"


def _api():
    from huggingface_hub import HfApi, get_token

    token = get_token()
    if not token:
        raise PublishError(
            "hub: no Hugging Face token: set HF_TOKEN or run `hf auth login`, then re-run "
            "`orch publish` to retry the upload"
        )
    return HfApi(token=token)


def _hub_error(repo_id: str, exc: Exception) -> PublishError:
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    if isinstance(exc, RepositoryNotFoundError):
        return PublishError(f"hub: repository {repo_id} not found or not yours; create it first")
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, HfHubHTTPError) and status in (409, 412):
        return PublishError(
            f"hub: {repo_id} changed on the Hub while publishing; re-run `orch publish`"
        )
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return PublishError(
        f"hub: upload to {repo_id} failed ({reason}); re-run `orch publish` to retry the upload"
    )


def publish_card(
    repo_id: str,
    repo_type: str,
    body: str,
    tables,
    source_url: str | None,
    overwrite: bool = False,
    create_pr: bool = False,
    message: str = "Update results",
) -> CardUpload:
    """Upload README `body` as the card of `repo_id` with CER/WER in `model-index`."""
    from huggingface_hub import ModelCard, ModelCardData

    api = _api()
    try:
        info = api.repo_info(repo_id, repo_type=repo_type)
        old_text = None
        if any(s.rfilename == "README.md" for s in info.siblings or []):
            path = api.hf_hub_download(repo_id, "README.md", repo_type=repo_type, revision=info.sha)
            with open(path, encoding="utf-8") as f:
                old_text = f.read()
        data = ModelCard(old_text).data if old_text else ModelCardData()
        merged = merge_results(data.eval_results or [], eval_results(tables, source_url), overwrite)
        card = render_card(data, body, merged, repo_id.rsplit("/", 1)[-1])
        commit = api.upload_file(
            path_or_fileobj=card.encode("utf-8"),
            path_in_repo="README.md",
            repo_id=repo_id,
            repo_type=repo_type,
            commit_message=message,
            parent_commit=info.sha,
            create_pr=create_pr,
        )
    except PublishError:
        raise
    except Exception as exc:  # noqa: BLE001 - HTTP, network and parse errors: one clear line
        raise _hub_error(repo_id, exc) from None
    return CardUpload(commit.commit_url, commit.oid, commit.pr_url)


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
    card = render_card(data, body, eval_results(tables, None), repo_id.rsplit("/", 1)[-1])
    ops = [CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode("utf-8"))]
    ops += [CommitOperationAdd(path_in_repo=n, path_or_fileobj=str(p)) for n, p in files.items()]
    try:
        commit = api.create_commit(
            repo_id, ops, commit_message=message, repo_type=repo_type, create_pr=create_pr
        )
    except Exception as exc:  # noqa: BLE001 - HTTP, network errors: one clear line
        raise _hub_error(repo_id, exc) from None
    return commit.pr_url or commit.commit_url
