"""Lists the installed distributions whose version differs from the lock (the newest releases CI tests against)."""

import sys
from importlib.metadata import distributions


def canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


locked = {}
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.split("#", 1)[0].strip()
    if "==" in line:
        name, version = line.split("==", 1)
        locked[canonical(name)] = version.strip()
installed = {canonical(d.metadata["Name"]): d.version for d in distributions()}
moved = [f"{name} {locked[name]} -> {installed[name]}" for name in sorted(locked)
         if name in installed and installed[name] != locked[name]]
added = [f"{name} {installed[name]}" for name in sorted(installed) if name not in locked and name != "streamprep"]
print(f"ci: newest releases: {len(moved)} of {len(locked)} locked packages moved" + (": " if moved else ""),
      "; ".join(moved))
if added:
    print("ci: installed beyond the lock:", "; ".join(added))
