"""The README's support table, generated from the family registry so that it cannot drift.

Regenerate with ``python -m vlm_export.report.support --write``; a test fails when README.md is out of date.
"""

from __future__ import annotations

START = "<!-- support-table:start -->"
END = "<!-- support-table:end -->"


def support_table() -> str:
    from vlm_export.models import families

    rows = [
        "| family | architectures | graphs | features | not supported | tested variants (tiny, random weights) |",
        "|---|---|---|---|---|---|",
    ]
    for name, family in families().items():
        roles = ", ".join(family.graph_roles)
        variants = "<br>".join(f"`{t.name}`: {t.description}" for t in family.tiny_checkpoints())
        rows.append(
            f"| {name} | {', '.join(family.architectures)} | {roles} | {family.features} | "
            f"{family.not_supported} | {variants} |"
        )
    return "\n".join(rows)


def render_block() -> str:
    return f"{START}\n{support_table()}\n{END}"


def update_readme(path: str = "README.md") -> None:
    from pathlib import Path

    text = Path(path).read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    Path(path).write_text(head + render_block() + tail)


if __name__ == "__main__":
    import sys

    if "--write" in sys.argv:
        update_readme()
    else:
        print(render_block())
