cd "$HOME"/'orch runs;$(x)/runs' 2>/dev/null || exit 0
echo "@now $(date +%s)"
tmux ls -F '@alive #{session_name}' 2>/dev/null
grep -H '' */run.json */progress.json */exit_code 2>/dev/null
grep -c '' */results.json */cancelled 2>/dev/null | sed 's/^/@has /'
stat -c '@ended %n %Y' */exit_code 2>/dev/null
for f in */exit_code; do
  d=${f%/exit_code}
  [ -f "$f" ] && read -r code < "$f" && [ "$code" != 0 ] &&
    tail -n 10 "$d/log.txt" 2>/dev/null | sed "s|^|@log $d |"
done
exit 0
