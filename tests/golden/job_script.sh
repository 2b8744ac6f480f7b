D="$HOME"/'orch runs;$(x)/runs/p-1'
export ORCH_RUN_ID=p-1
echo $$ > "$D/pid"
cd "$(cd "$HOME"/'orch runs;$(x)/code' && pwd -P)" 2>> "$D/log.txt" || { echo 1 > "$D/exit_code"; exit 1; }
trap 'true' INT TERM
[ -f "$D/env" ] && . "$D/env"; rm -f "$D/env"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 ORCH_RUN_DIR="$D"
ORCH_PYTHON="$HOME"/'orch runs;$(x)/venv/bin/python'
[ -x "$ORCH_PYTHON" ] || ORCH_PYTHON=$(command -v python3.11)
export ORCH_PYTHON
{ "$ORCH_PYTHON" -m gpu_worker run "$D"/playbook.yaml --out "$D"
} >> "$D/log.txt" 2>&1 < /dev/null
code=$?
echo $code > "$D/exit_code.tmp" && mv -f "$D/exit_code.tmp" "$D/exit_code"
exit $code