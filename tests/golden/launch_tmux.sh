set -e
mkdir -p "$HOME"/'orch runs;$(x)/runs'
busy=$(tmux ls -F '#{session_name}' 2>/dev/null | grep '^orch-' || true)
if [ -n "$busy" ] && [ 0 = 0 ]; then
  echo "$busy" | head -n 1; exit 75
fi
D="$HOME"/'orch runs;$(x)/runs/p-1'
mkdir "$D"
trap 'set +e; [ -n "$ok" ] || { tmux kill-session -t =orch-p-1 2>/dev/null; rm -rf "$D"; }' EXIT
(umask 077 && cat > "$D/env")
printf '%s' 'name: p
' > "$D/playbook.yaml"

pid=$(tmux new-session -d -P -F '#{pane_pid}' -s orch-p-1   'D="$HOME"/'"'"'orch runs;$(x)/runs/p-1'"'"'
export ORCH_RUN_ID=p-1
echo $$ > "$D/pid"
cd "$(cd "$HOME"/'"'"'orch runs;$(x)/code'"'"' && pwd -P)" 2>> "$D/log.txt" || { echo 1 > "$D/exit_code"; exit 1; }
trap '"'"'true'"'"' INT TERM
[ -f "$D/env" ] && . "$D/env"; rm -f "$D/env"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 ORCH_RUN_DIR="$D"
ORCH_PYTHON="$HOME"/'"'"'orch runs;$(x)/venv/bin/python'"'"'
[ -x "$ORCH_PYTHON" ] || ORCH_PYTHON=$(command -v python3.11)
export ORCH_PYTHON
{ "$ORCH_PYTHON" -m gpu_worker run "$D"/playbook.yaml --out "$D"
} >> "$D/log.txt" 2>&1 < /dev/null
code=$?
echo $code > "$D/exit_code.tmp" && mv -f "$D/exit_code.tmp" "$D/exit_code"
exit $code')
printf '%s%s}' '{"run_id": "p-1", "state": "running", "tmux_session": "orch-p-1", "pid": ' "$pid" > "$D/run.json"
echo "$pid"
ok=1
