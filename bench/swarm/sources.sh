#!/usr/bin/env bash
# Put the sources of Swarm 3.4 and its two dependencies under WORKDIR/src, at the commits the
# side by side was built from, and make their mix.exs files build offline (no package server).
# usage: sources.sh WORKDIR [GIT_BASE]     GIT_BASE: where OWNER/NAME are cloned from
#                                          (default https://github.com; a local folder works too)
# A tree that is already there is not fetched again; the mix.exs edits are made either way.
set -eu
W=$(mkdir -p "$1" && cd "$1" && pwd); BASE=${2:-https://github.com}
fetch() {  # fetch DIR OWNER/NAME COMMIT
  local dir=$W/src/$1
  [ -f "$dir/mix.exs" ] && return
  local tmp; tmp=$(mktemp -d)
  git clone -q --bare "$BASE/$2" "$tmp/repo"
  mkdir -p "$dir"
  git --git-dir="$tmp/repo" archive "$3" | tar -x -C "$dir"
  rm -rf "$tmp"
  echo "$2 $3 -> $dir"
}
fetch swarm bitwalker/swarm 33d2b3d1a2c22a4a256602c47bc2e64a1be7fdb7                   # master: 3.4.0 + 6 commits
fetch libring bitwalker/libring 551ff9615ee40324233ce5319af10257d159ce92               # tag 1.4.0
fetch gen_state_machine ericentin/gen_state_machine 39fa15c38cb0134c5b37a7321f8872fd57c17253  # tag v2.0.3
# Swarm takes its two dependencies from the folders beside it; theirs list only dev/test tools.
python3 - "$W/src" <<'EOF'
import re, sys
src = sys.argv[1]
deps = {
    "swarm": '[{:libring, path: "../libring"}, {:gen_state_machine, path: "../gen_state_machine"}]',
    "libring": "[]",
    "gen_state_machine": "[]",
}
for name, body in deps.items():
    path = f"{src}/{name}/mix.exs"
    text = open(path).read()
    new, count = re.subn(r"defp deps do\n.*?\n  end\n", f"defp deps do\n    {body}\n  end\n", text, flags=re.S)
    if count != 1:
        sys.exit(f"{path}: no single 'defp deps do ... end' to edit")
    open(path, "w").write(new)
    print(f"{path}: deps = {body}")
EOF
