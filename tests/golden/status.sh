cd "$HOME"/'orch runs;$(x)/runs' 2>/dev/null || exit 0
echo "@now $(date +%s)"
tmux ls -F '@alive #{session_name}' 2>/dev/null
grep -H '' p-1/run.json q-2/run.json p-1/progress.json q-2/progress.json p-1/exit_code q-2/exit_code 2>/dev/null
grep -c '' p-1/results.json q-2/results.json p-1/cancelled q-2/cancelled 2>/dev/null | sed 's/^/@has /'
stat -c '@ended %n %Y' p-1/exit_code q-2/exit_code 2>/dev/null
for f in p-1/exit_code q-2/exit_code; do
  d=${f%/exit_code}
  [ -f "$f" ] && read -r code < "$f" && [ "$code" != 0 ] &&
    tail -n 10 "$d/log.txt" 2>/dev/null | sed "s|^|@log $d |"
done
exit 0
