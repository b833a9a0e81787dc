"""Findings/Impression templates per modality and body part, editable by the site.

Built-in templates live in ``resources/templates/``; a site adds or overrides them in
``<config_dir>/templates/`` (same file name replaces a built-in one). Two formats:

- JSON: ``{"name", "modality", "body_part", "findings", "impression"}``;
- Markdown: a ``---`` front matter with ``name:``, ``modality:``, ``body_part:``, then
  ``## Findings`` and ``## Impression`` sections.

The best template for a study matches modality and body part, then modality only, then the
generic one (empty modality and body part). A broken file is skipped with a logged reason.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from dicom_net.paths import config_dir

log = logging.getLogger(__name__)

BUILTIN_DIR = Path(__file__).resolve().parents[2] / "resources" / "templates"
PROMPTS_FILE = Path(__file__).resolve().parents[2] / "resources" / "prompts" / "quick_prompts.json"


class TemplateError(ValueError):
    """A template file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class ReportTemplate:
    name: str
    modality: str
    body_part: str
    findings: str
    impression: str
    source: str = ""


def site_dir() -> Path:
    return config_dir() / "templates"


def parse_markdown_template(text: str, source: str = "") -> ReportTemplate:
    match = re.match(r"\A---\n(.*?)\n---\n(.*)\Z", text.replace("\r\n", "\n"), re.DOTALL)
    if not match:
        raise TemplateError(f"{source}: Markdown template must start with a --- front matter block")
    meta = {}
    for line in match.group(1).splitlines():
        key, sep, value = line.partition(":")
        if sep:
            meta[key.strip().lower()] = value.strip()
    sections: dict[str, list[str]] = {}
    current = None
    for line in match.group(2).split("\n"):
        heading = re.match(r"^##\s+(findings|impressions?)\s*$", line, re.IGNORECASE)
        if heading:
            current = "findings" if heading.group(1).lower() == "findings" else "impression"
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
        elif line.strip():
            raise TemplateError(f"{source}: text before the first ## Findings / ## Impression heading")
    if "name" not in meta:
        raise TemplateError(f"{source}: front matter needs a name")
    return ReportTemplate(
        name=meta["name"],
        modality=meta.get("modality", "").upper(),
        body_part=meta.get("body_part", "").upper(),
        findings="\n".join(sections.get("findings", [])).strip("\n"),
        impression="\n".join(sections.get("impression", [])).strip("\n"),
        source=source,
    )


def parse_json_template(text: str, source: str = "") -> ReportTemplate:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TemplateError(f"{source}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise TemplateError(f"{source}: a JSON template is an object with at least a name")
    values = {key: data.get(key, "") for key in ("modality", "body_part", "findings", "impression")}
    bad = [key for key, value in values.items() if not isinstance(value, str)]
    if bad:
        raise TemplateError(f"{source}: {', '.join(bad)} must be text")
    return ReportTemplate(
        data["name"],
        values["modality"].upper(),
        values["body_part"].upper(),
        values["findings"],
        values["impression"],
        source,
    )


def load_template(path: Path) -> ReportTemplate:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".md":
        return parse_markdown_template(text, str(path))
    return parse_json_template(text, str(path))


def load_templates(builtin: Path = BUILTIN_DIR, site: Path | None = None) -> list[ReportTemplate]:
    """Built-in templates with the site's added/overriding ones (by file name)."""
    files: dict[str, Path] = {}
    for folder in (builtin, site if site is not None else site_dir()):
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.suffix in (".json", ".md"):
                    files[path.stem] = path
    templates = []
    for path in files.values():
        try:
            templates.append(load_template(path))
        except (TemplateError, OSError, UnicodeDecodeError) as exc:
            log.warning("report template skipped: %s", exc)
    return templates


def best_template(templates: list[ReportTemplate], modality: str, body_part: str) -> ReportTemplate | None:
    """Modality + body part, then modality only, then the generic template."""
    modality, body_part = modality.upper(), body_part.upper()
    for wanted in ((modality, body_part), (modality, ""), ("", "")):
        for template in templates:
            if (template.modality, template.body_part) == wanted:
                return template
    return None


def quick_prompts(modality: str, path: Path = PROMPTS_FILE) -> list[str]:
    """The quick questions for a modality followed by the generic ones."""
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("quick prompts unavailable: %s", exc)
        return []
    specific = table.get(modality.upper(), []) if modality else []
    return [*specific, *[p for p in table.get("", []) if p not in specific]]
