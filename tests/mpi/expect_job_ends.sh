#!/bin/sh
# Runs an MPI job that must fail, and passes when it exits non-zero within MAX_SECONDS with output
# matching PATTERN (an extended regular expression): a rank that dies or hangs must end the job.
# usage: expect_job_ends.sh MAX_SECONDS PATTERN command [arguments...]
max=$1
pattern=$2
shift 2
start=$(date +%s)
output=$(timeout -s KILL $((max + 30)) "$@" 2>&1)
status=$?
elapsed=$(($(date +%s) - start))
printf '%s\n' "$output"
if [ "$status" -eq 0 ]; then
  echo "FAIL: the job exited with status 0; a failed rank must fail the job"
  exit 1
fi
if [ "$status" -eq 137 ]; then
  echo "FAIL: the job hung and was killed after $((max + 30)) s"
  exit 1
fi
if [ "$elapsed" -gt "$max" ]; then
  echo "FAIL: the job took ${elapsed} s to end (limit ${max} s)"
  exit 1
fi
if ! printf '%s\n' "$output" | grep -Eq "$pattern"; then
  echo "FAIL: the output does not name the problem (expected /$pattern/)"
  exit 1
fi
echo "PASS: the job ended with status $status after ${elapsed} s and named the problem"
