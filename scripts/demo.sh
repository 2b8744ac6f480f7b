#!/usr/bin/env bash
# The whole loop on the built-in `local` host: install, run the demo playbook (the bundled Odia
# sample lines; a small Qwen2.5-VL-architecture model made locally; Tesseract beside it), fetch
# the results, publish them into a demo project's README (no Hub), and show the table.
# The demo project is a fresh git repository under .orch/demo-project (ignored by this repo)
# holding only its data: the worker and the `demo` playbook come from the installed orch.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh worker

demo=.orch/demo-project
rm -rf "$demo"
mkdir -p "$demo/data"
cp -r data/sample "$demo/data/sample"   # the project's data: the bundled Odia sample lines
printf '# Odia OCR demo\n\nResults of `orch run demo --host local`.\n' > "$demo/README.md"
cd "$demo"
git init -q
orch init   # orch.yaml, playbooks/example.yaml, .gitignore; no worker code: orch ships its own
if ! git config user.name >/dev/null; then  # a fresh machine has no git identity yet
  export GIT_AUTHOR_NAME=orch-demo GIT_AUTHOR_EMAIL=demo@localhost
  export GIT_COMMITTER_NAME=orch-demo GIT_COMMITTER_EMAIL=demo@localhost
fi
git add -A
git commit -qm "demo project"

orch run demo --host local --follow
orch fetch
orch publish --no-hub
echo
sed -n '/orch:results:start/,/orch:results:end/p' README.md
echo
echo "demo project: $PWD (README.md, results/, git log)"
