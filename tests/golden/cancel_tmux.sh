D="$HOME"/'orch runs;$(x)/runs/p-1'
[ -d "$D" ] || { echo missing; exit 0; }
[ -f "$D/exit_code" ] && { echo finished; exit 0; }
touch "$D/cancelled"
pid=$(cat "$D/pid" 2>/dev/null)
if [ -n "$pid" ]; then
  for sig in INT TERM KILL; do
    kill -s $sig -- "-$pid" 2>/dev/null || break
    i=0
    while kill -0 -- "-$pid" 2>/dev/null && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done
    kill -0 -- "-$pid" 2>/dev/null || break
  done
fi
tmux kill-session -t =orch-p-1 2>/dev/null || true
[ -f "$D/exit_code" ] || { echo 137 > "$D/exit_code.tmp" && mv -f "$D/exit_code.tmp" "$D/exit_code"; }
echo cancelled
