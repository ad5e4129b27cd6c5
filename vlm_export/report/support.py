"""The README's support table, generated from the family registry so that it cannot drift.

Regenerate with ``python -m vlm_export.report.support``; a test fails when README.md is out of date.
"""

from __future__ import annotations

START = "<!-- support-table:start -->"
END = "<!-- support-table:end -->"


def support_table() -> str:
    from vlm_export.models import families

    rows = [
        "| family | architectures | graphs | tested variants (tiny, random weights) |",
        "|---|---|---|---|",
    ]
    for name, family in families().items():
        roles = ", ".join(family.graph_roles)
        variants = "<br>".join(f"`{t.name}`: {t.description}" for t in family.tiny_checkpoints())
        rows.append(f"| {name} | {', '.join(family.architectures)} | {roles} | {variants} |")
    return "\n".join(rows)


def render_block() -> str:
    return f"{START}\n{support_table()}\n{END}"


if __name__ == "__main__":
    print(render_block())
