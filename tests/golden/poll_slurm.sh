cd "$HOME"/'orch runs;$(x)/runs' 2>/dev/null || exit 0
ids=$(sed -n 's/.*"slurm_job": *"\([0-9]*\).*/\1/p' p-1/run.json 2>/dev/null | sort -u)
if [ -n "$ids" ]; then
  squeue -h -r -u "$(id -un)" -o '@sq %i|%T|%r' 2>/dev/null
  list=$(echo $ids | tr ' ' ,)
  if acct=$(sacct -n -X -P -j "$list" -o JobID,State,ExitCode,Reason 2>/dev/null) &&
     [ -n "$acct" ]; then
    printf '%s\n' "$acct" | sed 's/^/@sa /'
  else
    alt=$(echo $ids | tr ' ' '|')
    scontrol show job -o 2>/dev/null | grep -E "JobId=($alt) " | sed 's/^/@sc /'
  fi
fi
cd "$HOME"/'orch runs;$(x)/runs' 2>/dev/null || exit 0
echo "@now $(date +%s)"
tmux ls -F '@alive #{session_name}' 2>/dev/null
grep -H '' p-1/run.json p-1/progress.json p-1/exit_code 2>/dev/null
grep -c '' p-1/results.json p-1/cancelled 2>/dev/null | sed 's/^/@has /'
stat -c '@ended %n %Y' p-1/exit_code 2>/dev/null
for f in p-1/exit_code; do
  d=${f%/exit_code}
  [ -f "$f" ] && read -r code < "$f" && [ "$code" != 0 ] &&
    tail -n 10 "$d/log.txt" 2>/dev/null | sed "s|^|@log $d |"
done
exit 0
