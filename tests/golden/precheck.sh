rc=0
msg=$(cd "$HOME"/'orch runs;$(x)/code' && {
ORCH_PYTHON="$HOME"/'orch runs;$(x)/venv/bin/python'
[ -x "$ORCH_PYTHON" ] || ORCH_PYTHON=$(command -v python3.11)
"$ORCH_PYTHON" -m gpu_worker.precheck "$D/playbook.yaml" 2>&1; }) || rc=$?
if [ "$rc" != 0 ]; then
  rm -rf "$D"; printf '%s\n' "$msg"; [ "$rc" = 77 ] || printf '%s\n' "$msg" >&2
  exit "$rc"
fi
