"""A record store planted with markup that runs scripts in a careless report: notebook outputs and
markdown cells with `<script>`, event handlers, `javascript:` links, SVG, frames, a meta refresh
and beacons, and record fields (name, tags, notes, failure reason, user, metric and parameter
names, a sweep's fields) holding the same. Every payload, were it to run, sets
`window.__pwned`, changes the page's title or asks the sentinel URL for something; the genuine
content next to it (a PNG, a table, a heading, metric curves) must still show.

Shared by the fast test of the pages' HTML and the Chromium test (test_report_security.py,
test_report_browser.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from conftest import add_run

# a 2x2 PNG: an output image that must still show
PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6Q"
       "AAAABJRU5ErkJggg==")
GENUINE = "hello from the notebook"


def script(url: str, where: str) -> str:
    """What each payload runs: flags the page and asks the sentinel (no quotes of its own, so
    it fits in any attribute)."""
    return (f"window.__pwned=`{where}`;document.title=`pwned`;"
            f"fetch(`{url}/{where}`);new Image().src=`{url}/img-{where}`")


# kept by the sanitizer, by design: a browser runs no script of an SVG shown as an image
INERT = {"svg as image"}


def payloads(url: str) -> dict[str, str]:
    """Markup that would run `script` or fetch from `url`, by what it tries."""
    def js(where: str) -> str:
        return script(url, where)

    return {
        "script": f"<script>{js('script')}</script>",
        "img onerror": f'<img src=x onerror="{js("onerror")}">',
        "beacon": f'<img src="{url}/beacon" alt="beacon">',
        "javascript link": f'<a class="bad-link" href="javascript:{js("link")}">click me</a>',
        "svg onload": f'<svg onload="{js("svg")}"><script>{js("svgscript")}</script>'
                      f'<a href="javascript:{js("svglink")}"><text>svg</text></a></svg>',
        "svg as image": "<img src=\"data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg' "
                        f"onload='{js('svgimg')}'/>\">",
        "iframe": f'<iframe src="{url}/iframe"></iframe>'
                  f'<iframe srcdoc="<script>parent.{js("srcdoc")}</script>"></iframe>',
        "object": f'<object data="{url}/object"></object><embed src="{url}/embed">',
        "meta refresh": f'<meta http-equiv="refresh" content="0;url={url}/refresh">',
        "style": f"<style>body{{background:url({url}/css)}}</style>"
                 f'<div style="background:url({url}/style-attr)">styled</div>',
        "link": f'<link rel="stylesheet" href="{url}/stylesheet">',
        "form": f'<form action="{url}/form"><button class="bad-button">go</button></form>',
        "base": f'<base href="{url}/">',
        "details ontoggle": f'<details open ontoggle="{js("toggle")}"><summary>s</summary>'
                            "</details>",
        "input onfocus": f'<input autofocus onfocus="{js("focus")}">',
        "mutation": f'<math><mtext><table><mglyph><style><img src=x onerror="{js("mxss")}">',
        "noscript": f'<noscript><p title="</noscript><img src=x onerror={js("noscript")}>">'
                    "</p></noscript>",
        "data link": f'<a class="bad-link" href="data:text/html,<script>{js("data")}</script>">'
                     "data</a>",
    }


def hostile_notebook(url: str) -> str:
    """An executed notebook with genuine cells and outputs first, then every payload: as HTML
    outputs, as JavaScript, Markdown and SVG outputs, and as a markdown cell's raw HTML. (Some
    payloads leave an element open that swallows what follows, so the genuine part comes
    first.)"""
    bad = payloads(url)
    html_outputs = [new_output("display_data", data={"text/html": markup, "text/plain": name})
                    for name, markup in bad.items()]
    return nbformat.writes(new_notebook(cells=[
        new_markdown_cell("# Results\n\nA [genuine link](https://example.com/docs)."),
        new_code_cell(f"print('{GENUINE}')", execution_count=1, outputs=[
            new_output("stream", name="stdout", text=f"{GENUINE}\n"),
            new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"}),
            new_output("execute_result", execution_count=1, data={
                "text/html": '<table class="dataframe"><thead><tr><th>lr</th></tr></thead>'
                             '<tbody><tr><td id="genuine-cell">0.01</td></tr></tbody></table>',
                "text/plain": "df"}),
            new_output("display_data", data={
                "image/svg+xml": f"<svg xmlns='http://www.w3.org/2000/svg' onload=\""
                                 f"{script(url, 'svg-output')}\"><rect width='4' height='4'/>"
                                 "</svg>", "text/plain": "svg"}),
            *html_outputs,
            new_output("display_data", data={"application/javascript": script(url, "js-output"),
                                             "text/plain": "js"}),
            new_output("display_data", data={"text/markdown": bad["img onerror"],
                                             "text/plain": "md"}),
        ]),
        new_markdown_cell("\n\n".join(bad.values())
                          + f"\n\n[markdown link](javascript:{script(url, 'mdlink')})"),
    ]))


def plant(store: Any, url: str) -> dict[str, Any]:
    """A store with a hostile run (notebook, name, tags, notes, failure, user, metric and
    parameter names), a genuine run with a notebook and curves, and a hostile sweep over
    them; what was planted, by role."""
    from sagebook.runs.details import annotate
    from sagebook.sweeps.record import SweepRecord

    bad = payloads(url)
    hostile = add_run(store, status="Failed", user=bad["img onerror"],
                      failure=bad["script"] + "</pre>" + bad["svg onload"],
                      metrics={bad["img onerror"]: 0.5, "acc": 0.4},
                      tags={"stage": bad["javascript link"]},
                      training={"epochs": 2, bad["script"]: bad["iframe"]},
                      created="2026-01-01T10:00:00+00:00")
    hostile.put_text("notebook.ipynb", hostile_notebook(url))
    hostile.put_text("failure.txt", bad["mutation"] + "\n" + bad["meta refresh"])
    hostile.update(notebook={"status": "completed"})
    annotate(hostile, name=bad["svg onload"], note=bad["details ontoggle"] + bad["base"],
             tags=[f"owner={bad['img onerror']}"])
    genuine = add_run(store, metrics={"acc": 0.9, "loss": 0.2},
                      training={"epochs": 2, "lr": 0.01}, created="2026-01-01T11:00:00+00:00")
    genuine.put_text("notebook.ipynb", nbformat.writes(new_notebook(cells=[
        new_code_cell(f"print('{GENUINE}')", execution_count=1, outputs=[
            new_output("stream", name="stdout", text=f"{GENUINE}\n"),
            new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"})])])))
    genuine.update(notebook={"status": "completed"})
    sweep = SweepRecord.create(store, "exp-a", "sweep-20260101-100000-abcdef", {
        "strategy": bad["script"], "user": bad["img onerror"], "backend": "local",
        "instance_type": bad["javascript link"],
        "objective": {"metric": bad["svg onload"], "goal": "maximize"},
        "parameters": [bad["iframe"], "lr"],
        "config": {"job_file": bad["script"], "overrides": [bad["iframe"]]},
        "trials": [
            {"trial": 0, "run_id": hostile.run_id, "status": "Completed", "objective": 0.4,
             "parameters": {bad["iframe"]: bad["img onerror"], "lr": 0.1},
             "overrides": [f"training.lr={bad['script']}"],
             "ended": "2026-01-01T10:05:00+00:00"},
            {"trial": 1, "run_id": genuine.run_id, "status": "Completed", "objective": 0.9,
             "parameters": {bad["iframe"]: 1, "lr": 0.01}, "overrides": ["training.lr=0.01"],
             "ended": "2026-01-01T11:05:00+00:00"},
        ]})
    sweep.put_text("sweep.yaml", json.dumps({"parameters": {"lr": {"scale": "log"}}}))
    return {"hostile": hostile, "genuine": genuine, "sweep": sweep}


# What may not be in a page of the report beyond its own head: elements that run, fetch,
# frame, post or redirect (the charts' inline SVG is the report's: its attributes are checked).
FORBIDDEN_TAGS = {"script", "iframe", "frame", "object", "embed", "math", "form", "base", "link",
                  "meta", "style", "noscript", "template", "video", "audio", "source", "applet",
                  "button"}
URL_ATTRIBUTES = {"href", "src", "action", "data", "srcdoc", "formaction", "background",
                  "poster", "xlink:href", "srcset"}
FETCHING_STYLE = re.compile(r"url\(|@import|expression\(|image-set\(", re.IGNORECASE)


class Elements(HTMLParser):
    """Every start tag of a page with its attributes and whether it is in the head, the text
    of each inline script and of each style block, and the page's text."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str], bool]] = []
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.text: list[str] = []
        self._in_head, self._in = True, ""
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self._in_head = False
        self.tags.append((tag, {k: v or "" for k, v in attrs}, self._in_head))
        self._in = tag if tag in ("script", "style") else ""
        if self._in:
            (self.scripts if tag == "script" else self.styles).append("")

    def handle_data(self, data: str) -> None:
        if self._in:
            texts = self.scripts if self._in == "script" else self.styles
            texts[-1] += data
        else:
            self.text.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._in = ""


def policy(html: str) -> str:
    """The page's Content-Security-Policy (its meta tag's), "" when it has none."""
    return next((attrs.get("content", "") for tag, attrs, in_head in Elements(html).tags
                 if tag == "meta" and in_head
                 and attrs.get("http-equiv", "").lower() == "content-security-policy"), "")


def dangers(html: str) -> list[str]:
    """What of a page could run a script, fetch, frame, post or redirect: elements other than
    the head's own meta tags, styles that fetch nothing and the scripts the page's policy names
    by hash; event handler attributes; URLs other than plain links and data: images."""
    page = Elements(html)
    found = []
    for tag, attrs, in_head in page.tags:
        own = tag in ("style", "script") or tag == "meta" and in_head and (
            "charset" in attrs or attrs.get("name") == "viewport"
            or attrs.get("http-equiv", "").lower() == "content-security-policy")
        if tag in FORBIDDEN_TAGS and not own:
            found.append(f"<{tag}>")
        for name, value in attrs.items():
            url = value.strip().lower()
            if name.startswith("on"):
                found.append(f"<{tag} {name}>")
            elif name == "style" and FETCHING_STYLE.search(value) or name in URL_ATTRIBUTES and (
                    url.startswith(("javascript:", "vbscript:", "data:"))
                    and not (tag == "img" and name == "src" and url.startswith("data:image/"))
                    or tag == "img" and name == "src" and not url.startswith("data:image/")
                    or name in ("srcdoc", "action", "formaction", "srcset")):
                found.append(f"<{tag} {name}={value[:40]!r}>")
    found += [f"<style>{text[:40]!r}" for text in page.styles if FETCHING_STYLE.search(text)]
    allowed = policy(html)
    for text in page.scripts:
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        if f"'sha256-{digest}'" not in allowed:
            found.append(f"<script>{text[:40]!r}")
    return found
