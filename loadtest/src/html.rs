//! `report.html`: report.md rendered to one self-contained page (CommonMark with tables,
//! by `pulldown-cmark`), each chart's SVG inlined where the markdown links it, and a
//! small style sheet. No script, font or image is fetched: the file can be mailed or
//! opened from disk.

use std::path::Path;

use pulldown_cmark::{Options, Parser, html};

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:1280px;margin:2em auto;\
padding:0 1em;color:#222;line-height:1.45}table{border-collapse:collapse;margin:1em 0;\
font-size:14px}th,td{border:1px solid #ccc;padding:3px 8px}th{background:#f3f3f3}\
td:not(:first-child){font-variant-numeric:tabular-nums}code{background:#f5f5f5;padding:0 3px}\
pre{background:#f5f5f5;padding:8px;overflow-x:auto}svg{max-width:100%;height:auto}";

/// The page for `markdown`, with the SVGs it links read from `folder`.
pub(crate) fn render(markdown: &str, folder: &Path, date: &str) -> String {
    let mut body = String::new();
    html::push_html(&mut body, Parser::new_ext(markdown, Options::ENABLE_TABLES));
    let body = inline_svgs(&body, folder);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>loadlab load test, {}</title><style>{STYLE}</style></head><body>\n{body}\
         </body></html>\n",
        escape(date)
    )
}

/// Replaces each `<img src="NAME.svg" ...>` with the file's `<svg>` element; an image
/// whose file cannot be read stays a link, and says so.
fn inline_svgs(body: &str, folder: &Path) -> String {
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(at) = rest.find("<img src=\"") {
        out.push_str(&rest[..at]);
        let tag = &rest[at..];
        let Some(end) = tag.find('>') else {
            out.push_str(tag);
            return out;
        };
        let src = tag["<img src=\"".len()..]
            .split('"')
            .next()
            .unwrap_or_default();
        let svg = (src.ends_with(".svg") && !src.contains('/'))
            .then(|| std::fs::read_to_string(folder.join(src)).ok())
            .flatten()
            .and_then(|text| text.find("<svg").map(|i| text[i..].to_owned()));
        match svg {
            Some(svg) => out.push_str(&svg),
            None => {
                out.push_str(&tag[..=end]);
                out.push_str(" (chart missing)");
            }
        }
        rest = &tag[end + 1..];
    }
    out.push_str(rest);
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
