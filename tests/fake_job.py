"""A stand-in job for the orchestrator tests: progress, log lines, then results.json.

Reads `job:` from the playbook: steps, sleep, exit (code), corrupt (bad results.json),
ignore_signals (survive SIGINT/SIGTERM, so only SIGKILL stops it), big_mb (size of a random
predictions.jsonl written before results.json), hold (after the last step, wait until a file
`release` appears in the run folder), and fail_shard: the shard (`data.shard`) that exits with
code 3 instead.
"""

import json
import os
import signal
import sys
import time

import yaml

out = sys.argv[sys.argv.index("--out") + 1]
book = yaml.safe_load(open(sys.argv[sys.argv.index("--playbook") + 1]))
job = book.get("job", {})
steps, pause = int(job.get("steps", 5)), float(job.get("sleep", 0.05))
if job.get("ignore_signals"):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def write_json(name, doc):
    tmp = os.path.join(out, name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, os.path.join(out, name))


for i in range(steps):
    print(f"step {i}", flush=True)
    write_json(
        "progress.json",
        {
            "done": i + 1,
            "total": steps,
            "method": "baseline",
            "images_per_s": 10.0,
            "eta_s": (steps - i - 1) * pause,
            "updated_at": time.time(),
        },
    )
    time.sleep(pause)
while job.get("hold") and not os.path.exists(os.path.join(out, "release")):
    time.sleep(0.05)
method = {
    "cer": 0.42,
    "wer": 0.7,
    "exact_match": 0.1,
    "n": steps,
    "failures": 0,
    "time_per_image_s": pause,
    "images_per_s": 1 / pause if pause else 0.0,
}
if job.get("corrupt"):
    open(os.path.join(out, "results.json"), "w").write('{"baseline": {"cer": ')
else:
    write_json("results.json", {"run": {"run_id": os.environ["ORCH_RUN_ID"]}, "baseline": method})
with open(os.path.join(out, "predictions.jsonl"), "w") as f:
    f.write('{"index": 0}\n')
    for _ in range(int(job.get("big_mb", 0))):
        f.write(json.dumps({"noise": os.urandom(512 * 1024).hex()}) + "\n")
print("done", flush=True)
code = int(job.get("exit", 0))
if "fail_shard" in job and (book.get("data") or {}).get("shard") == job["fail_shard"]:
    code = 3
sys.exit(code)
