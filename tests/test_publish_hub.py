"""The model card on the Hub: its own text kept, orch's results block between markers, the plots
uploaded beside it, model-index entries replaced (not accumulated) and keyed so two playbooks
never collide, an identical republish uploading nothing; every Hub check before any local
change. huggingface_hub's own client talks to the local stand-in Hub (HF_ENDPOINT)."""

import os
import subprocess

import pytest
import yaml

from tests.conftest import git
from tests.helpers import orch_cmd
from tests.hub_server import HubServer, Repo
from tests.test_publish import RUN, commits, pub, write_results

__all__ = ["pub"]  # the fixture, shared with test_publish.py

TOKEN = "hf_TestSecretToken_9f8e7d6c5b4a"
CARD_TEXT = "# Odia OCR model\n\nFine-tuned for Odia lines. Written on the Hub.\n"
ADAPTERS = {
    "base": "/root/models/Qwen2.5-VL-3B-Instruct",
    "checkpoints": ["/root/ckpt/checkpoint-500"],
    "adapters": [{"name": "checkpoint-500", "sha256": "1a2b3c4d5e6f7a8b9c0d"}],
}


@pytest.fixture(scope="module")
def hub_server():
    with HubServer() as server:
        yield server


@pytest.fixture
def hub(hub_server, pub):
    """The stand-in Hub with an existing card for me/odia-ocr, and a git origin for source.url."""
    hub_server.reset()
    hub_server.repos["me/odia-ocr"] = Repo(
        readme=b"---\nlicense: apache-2.0\nlanguage: [or]\nbase_model: Qwen/Qwen2.5-VL-3B"
        b"-Instruct\n---\n" + CARD_TEXT.encode()
    )
    git(pub, "remote", "add", "origin", "git@github.com:me/odia-ocr.git")
    return hub_server


def orch_sub(root, *args, token=TOKEN, endpoint=None):
    """`orch ARGS` as a subprocess against the stand-in Hub."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_ENDPOINT")}
    env.update(
        HF_ENDPOINT=endpoint or os.environ["TEST_HF_ENDPOINT"],
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HOME=str(root.parent / "hf-home"),
    )
    if token:
        env["HF_TOKEN"] = token
    return subprocess.run(
        orch_cmd(*args),
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(autouse=True)
def _endpoint(request, monkeypatch):
    if "hub" in request.fixturenames:
        monkeypatch.setenv("TEST_HF_ENDPOINT", request.getfixturevalue("hub_server").url)


def card(hub) -> tuple[dict, str]:
    """(front matter, body) of the card on the stand-in Hub's main."""
    _, front, body = hub.repos["me/odia-ocr"].readme.decode().split("---\n", 2)
    return yaml.safe_load(front), body


def metrics(meta: dict) -> dict:
    """{(config, type): metric} of every model-index entry."""
    [model] = meta["model-index"]
    return {(m.get("config"), m["type"]): m for r in model["results"] for m in r["metrics"]}


def test_card_keeps_its_own_text_over_two_publishes_and_gets_block_plots_model_index(pub, hub):
    res = orch_sub(pub, "publish")
    assert res.returncode == 0, res.stderr
    meta, body = card(hub)
    assert body.startswith(CARD_TEXT)  # the card's own text, not the project's README
    assert "Our model reads Odia lines" not in body
    assert "<!-- orch:results:start -->" in body and "| combined | **0.301**" in body
    assert meta["license"] == "apache-2.0" and meta["language"] == ["or"]  # kept
    assert meta["base_model"] == "Qwen/Qwen2.5-VL-3B-Instruct"
    files = hub.repos["me/odia-ocr"].files
    assert "![CER against seconds per image](plots/quickwin.png)" in body
    assert files["plots/quickwin.png"] == (pub / "results/plots/quickwin.png").read_bytes()
    assert "(plots/history/quickwin.png)" in body and "plots/history/quickwin.png" in files
    assert "results/plots" not in body  # every image link resolves inside the Hub repo
    [result] = meta["model-index"][0]["results"]
    assert result["dataset"] == {"name": "lines", "type": "lines", "split": "test"}  # no path
    assert "/root" not in yaml.safe_dump(meta)  # model and dataset named, no host path
    m = metrics(meta)
    assert m[("quickwin/combined", "cer")]["value"] == 0.301
    assert m[("quickwin/combined", "cer")]["args"]["model"] == "Qwen2.5-VL-3B-Instruct"
    head = git(pub, "rev-parse", "HEAD").strip()
    assert result["source"]["url"] == f"https://github.com/me/odia-ocr/commit/{head}"
    # the owner edits the card on the Hub; a new run is published: both survive
    repo = hub.repos["me/odia-ocr"]
    edited = repo.readme.decode().replace("Written on the Hub.", "Written on the Hub. Edited.")
    repo.commit({"README.md": edited.encode()}, {}, False)
    write_results(
        pub, "quickwin-20261125-090000-cd34", {"baseline": 0.40, "combined": 0.28}, t=1.9e9
    )
    res = orch_sub(pub, "publish", "--overwrite")  # same model, new values
    assert res.returncode == 0, res.stderr
    meta, body = card(hub)
    assert body.startswith(CARD_TEXT.replace("Hub.", "Hub. Edited."))
    assert body.count("<!-- orch:results:start -->") == 1 and "| combined | **0.280**" in body
    assert "0.301" not in body and meta["license"] == "apache-2.0"
    auth = {r["headers"].get("authorization") for r in hub.requests if r["method"] == "POST"}
    assert auth == {f"Bearer {TOKEN}"}  # the token is sent to the Hub ...
    everything = res.stdout + res.stderr + git(pub, "log", "-p", "--all")
    everything += "".join(
        p.read_text(errors="replace")
        for p in pub.rglob("*")
        if p.is_file() and ".git" not in p.parts
    )
    assert TOKEN not in everything and TOKEN[:10] not in everything  # ... and shown nowhere


def test_model_index_is_replaced_not_accumulated_and_foreign_entries_kept(pub, hub):
    repo = hub.repos["me/odia-ocr"]
    foreign = (
        "---\nmodel-index:\n- name: odia-ocr\n  results:\n  - task: {type: image-to-text}\n"
        "    dataset: {name: IndicOCR, type: indic/ocr}\n    metrics:\n"
        "    - {type: cer, value: 0.5, name: Leaderboard CER}\n---\n" + CARD_TEXT
    )
    repo.commit({"README.md": foreign.encode()}, {}, False)
    assert orch_sub(pub, "publish").returncode == 0
    assert len(metrics(card(hub)[0])) == 8 + 1  # 4 methods x cer/wer + the foreign one
    # freshly trained adapters, a newer run of the same size: the card shows only them
    write_results(
        pub,
        "quickwin-20261125-090000-cd34",
        {"baseline": 0.42, "combined": 0.25},
        t=1.9e9,
        model=ADAPTERS,
    )
    res = orch_sub(pub, "publish")
    assert res.returncode == 0, res.stderr  # another model: no --overwrite needed
    m = metrics(card(hub)[0])
    ours = {k: v for k, v in m.items() if k[0] is not None}
    assert set(ours) == {
        (f"quickwin/{x}", t) for x in ("baseline", "combined") for t in ("cer", "wer")
    }
    model = ours[("quickwin/combined", "cer")]["args"]["model"]
    assert model == "Qwen2.5-VL-3B-Instruct + checkpoint-500@1a2b3c4d"
    assert ours[("quickwin/combined", "cer")]["args"]["run"] == "quickwin-20261125-090000-cd34"
    assert m[(None, "cer")]["value"] == 0.5  # an entry orch did not write is kept


def test_identical_republish_uploads_nothing(pub, hub):
    assert orch_sub(pub, "publish").returncode == 0
    made = len(hub.repos["me/odia-ocr"].commits)
    res = orch_sub(pub, "publish")
    assert res.returncode == 0, res.stderr
    assert "git: nothing new to commit" in res.stdout
    assert "hub: up to date, nothing uploaded" in res.stdout
    assert len(hub.repos["me/odia-ocr"].commits) == made


def test_two_playbooks_with_same_methods_n_and_data_do_not_collide(pub, hub):
    """Issue 17 item 9: the second publish refused "pass --overwrite" for identical results."""
    write_results(
        pub,
        "validation-20261125-100000-ef56",
        {"baseline": 0.39, "beam_search": 0.35, "ensemble": 0.33, "combined": 0.29},
        playbook="validation",
    )
    assert orch_sub(pub, "publish").returncode == 0
    res = orch_sub(pub, "publish")
    assert res.returncode == 0, res.stderr
    assert "--overwrite" not in res.stderr
    m = metrics(card(hub)[0])
    assert m[("quickwin/baseline", "cer")]["value"] == 0.42
    assert m[("validation/baseline", "cer")]["value"] == 0.39


def test_changed_value_needs_overwrite_and_is_refused_before_any_local_change(pub, hub):
    assert orch_sub(pub, "publish").returncode == 0
    before = commits(pub), (pub / "README.md").read_text()
    write_results(
        pub, "quickwin-20261125-090000-cd34", {"baseline": 0.42, "combined": 0.29}, t=1.9e9
    )
    res = orch_sub(pub, "publish")
    assert res.returncode == 1
    assert "would change (CER (quickwin/combined, n=50) on lines: published 0.301, new 0.29)" in (
        res.stderr
    )
    assert "--overwrite" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert (commits(pub), (pub / "README.md").read_text()) == before  # nothing local changed
    assert len(hub.repos["me/odia-ocr"].commits) == 1
    ok = orch_sub(pub, "publish", "--overwrite")
    assert ok.returncode == 0, ok.stderr
    assert metrics(card(hub)[0])[("quickwin/combined", "cer")]["value"] == 0.29


def test_no_token_unwritable_or_missing_repo_change_nothing(pub, hub):
    before = commits(pub), (pub / "README.md").read_text()
    res = orch_sub(pub, "publish", token=None)
    assert (
        res.returncode == 1 and "set HF_TOKEN" in res.stderr and "nothing was changed" in res.stderr
    )
    assert len(res.stderr.strip().splitlines()) == 1 and not res.stdout
    hub.repos["me/odia-ocr"].writable = False
    res = orch_sub(pub, "publish")
    assert res.returncode == 1 and "may not write to me/odia-ocr (HTTP 403)" in res.stderr
    hub.repos["me/odia-ocr"].writable = True
    (pub / "orch.yaml").write_text("hub: {repo_id: me/nope}\n")
    git(pub, "commit", "-qam", "other repo")
    res = orch_sub(pub, "publish")
    assert res.returncode == 1 and "repository me/nope not found" in res.stderr
    assert (pub / "README.md").read_text() == before[1] and not (pub / "results/plots").exists()
    assert int(commits(pub)) == int(before[0]) + 1  # only the test's own commit
    assert not hub.repos["me/odia-ocr"].commits


def test_card_shows_intervals_and_model_index_has_n_and_no_failed_method(pub, hub):
    from tests.test_publish import stats_results

    doc = stats_results(pub)
    res = orch_sub(pub, "publish", "stats-20261126-120000-ef56")
    assert res.returncode == 0, res.stderr
    meta, body = card(hub)
    g = doc["greedy"]
    assert f"| greedy | {g['cer']:.3f} ({g['cer_ci'][0]:.3f}–{g['cer_ci'][1]:.3f}) |" in body
    assert "| broken | failed (200 of 200) |" in body and "Sample size: n=200" in body
    m = metrics(meta)
    assert {c for c, _ in m} == {"stats/greedy", "stats/beam", "stats/sample"}  # broken left out
    assert m[("stats/beam", "cer")]["value"] == round(doc["beam"]["cer"], 4)
    assert m[("stats/beam", "cer")]["args"]["n"] == 200
    assert m[("stats/beam", "cer")]["name"] == "CER (stats/beam, n=200)"


def test_create_pr_and_unreachable_hub(pub, hub):
    res = orch_sub(pub, "publish", "--create-pr")
    assert res.returncode == 0 and "/me/odia-ocr/discussions/1" in res.stdout
    assert hub.repos["me/odia-ocr"].commits[-1]["create_pr"]
    assert hub.repos["me/odia-ocr"].readme.decode().endswith(CARD_TEXT)  # main untouched
    write_results(pub, "quickwin-20261125-090000-cd34", {"baseline": 0.40}, t=1.9e9)
    before = commits(pub)
    res = orch_sub(pub, "publish", endpoint="http://127.0.0.1:9")  # nothing listens there
    assert res.returncode == 1 and "hub: reading me/odia-ocr failed" in res.stderr
    assert commits(pub) == before


def test_dry_run_names_the_hub_entries_without_contacting_it(pub, hub):
    res = orch_sub(pub, "publish", "--dry-run", endpoint="http://127.0.0.1:9")
    assert res.returncode == 0, res.stderr
    assert "hub: model me/odia-ocr, commit to main" in res.stdout
    assert "quickwin/combined cer 0.301" in res.stdout


def test_publish_json(pub, hub):
    import json

    res = orch_sub(pub, "publish", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["runs"] == [RUN] and doc["exit_code"] == 0 and doc["error"] is None
    assert len(doc["commit"]) == 40 and "README.md" in doc["uploaded"]
    assert "plots/quickwin.png" in doc["uploaded"]
    plan = json.loads(orch_sub(pub, "publish", "--dry-run", "--json").stdout)
    assert plan["runs"] == [RUN] and plan["writes"] == [] and plan["readme_diff"] == ""
