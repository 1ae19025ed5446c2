#!/bin/sh
# Review-then-apply, the Terraform way: save a plan, look at it, apply exactly that plan.
# `apply` refuses the saved plan if the pool, Claude Code's login or settings.json moved since.
set -eu
plan=$(mktemp)
trap 'rm -f "$plan"' EXIT
if claude-pool plan --detailed-exitcode --out "$plan"; then
  echo "nothing to do"
  exit 0
elif [ $? -eq 2 ]; then
  claude-pool apply "$plan"
else
  exit 1
fi
