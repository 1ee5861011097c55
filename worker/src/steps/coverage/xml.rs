//! The XML formats: Cobertura, Clover and JaCoCo.
//!
//! Invariant (which number each total is):
//! - Cobertura: the `<line number hits>` entries of each `<class>`'s `<lines>` (not the
//!   copies under `<methods>`), merged per `filename` (inner classes share a file), a
//!   line hit when `hits > 0`; equal to the root's `lines-covered / lines-valid` for
//!   coverage.py and Istanbul. A root without classes counts by `lines-covered /
//!   lines-valid`, else by `line-rate`. The root's figures are checked either way.
//! - Clover: `coveredstatements / statements` of each `<file>`'s `<metrics>`, summed;
//!   the `<project>`'s `<metrics>` when no file has any. Istanbul's clover reporter
//!   writes its line counts there (its "statements" are lines) and PHPUnit one
//!   statement per executable line, so it is line coverage for both; Clover has no
//!   line count of its own.
//! - JaCoCo: each `<sourcefile>`'s `<line nr mi ci>` entries, a line covered when
//!   `ci > 0` — what JaCoCo's `LINE` counter counts; the report-level
//!   `<counter type="LINE" missed covered>` when no source file lists lines.

use super::model::{Declared, FileCov, Hits, Report, line, shown_path};
use super::{CoverageFormat, ReadError};
use quick_xml::events::{BytesStart, Event};
use std::collections::BTreeMap;

/// An element's attributes, unescaped and trimmed.
#[derive(Debug)]
pub struct Attrs(Vec<(String, String)>);

impl Attrs {
    fn of(e: &BytesStart<'_>, format: CoverageFormat) -> Result<Attrs, ReadError> {
        let mut v = Vec::new();
        for a in e.attributes() {
            let a = a.map_err(|e| ReadError::Malformed(format, e.to_string()))?;
            let value = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| ReadError::Malformed(format, e.to_string()))?;
            v.push((a.key.as_ref().to_owned(), value.trim().to_owned()));
        }
        Ok(Attrs(v))
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }
}

/// Call `f(ancestors, name, attrs)` for every element, in document order.
pub fn walk(
    text: &str,
    format: CoverageFormat,
    mut f: impl FnMut(&[String], &str, &Attrs) -> Result<(), ReadError>,
) -> Result<(), ReadError> {
    let mut reader = quick_xml::Reader::from_str(text);
    let mut stack: Vec<String> = Vec::new();
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| ReadError::Malformed(format, e.to_string()))?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let name = e.local_name().as_ref().to_owned();
                f(&stack, &name, &Attrs::of(e, format)?)?;
                if matches!(ev, Event::Start(_)) {
                    stack.push(name);
                }
            }
            Event::End(_) => {
                stack.pop();
            }
            Event::Eof => return Ok(()),
            _ => {}
        }
    }
}

/// The root element's name and attributes, and its first child's name.
pub fn root_and_child(text: &str) -> Option<(String, Attrs, Option<String>)> {
    let mut root: Option<(String, Attrs)> = None;
    let mut reader = quick_xml::Reader::from_str(text);
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) | Event::Empty(e) => {
                let name = e.local_name().as_ref().to_owned();
                match root {
                    None => root = Some((name, Attrs::of(&e, CoverageFormat::Auto).ok()?)),
                    Some((r, a)) => return Some((r, a, Some(name))),
                }
            }
            Event::End(_) | Event::Eof => return root.map(|(r, a)| (r, a, None)),
            _ => {}
        }
    }
}

/// A count attribute: a whole, non-negative number (some tools write `3.0`).
fn count(v: &str, what: impl FnOnce() -> String) -> Result<u64, ReadError> {
    if let Ok(n) = v.parse::<u64>() {
        return Ok(n);
    }
    match v.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 && n.fract() == 0.0 && n < 9.007e15 => Ok(n as u64),
        _ => Err(ReadError::Impossible(format!(
            "{}=\"{}\" is not a count",
            what(),
            v.chars().take(40).collect::<String>()
        ))),
    }
}

/// A hit count: any finite, non-negative number; `true` when above zero.
fn ran(v: &str, what: impl FnOnce() -> String) -> Result<bool, ReadError> {
    match v.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok(n > 0.0),
        _ => Err(ReadError::Impossible(format!(
            "{}=\"{}\" is not a count",
            what(),
            v.chars().take(40).collect::<String>()
        ))),
    }
}

fn root_is(stack: &[String], name: &str, want: &str, f: CoverageFormat) -> Result<(), ReadError> {
    if stack.is_empty() && name != want {
        return Err(ReadError::Malformed(
            f,
            format!("the root element is not <{want}>"),
        ));
    }
    Ok(())
}

fn parent(stack: &[String]) -> &str {
    stack.last().map_or("", String::as_str)
}

/// Cobertura XML.
pub fn cobertura(text: &str) -> Result<Report, ReadError> {
    let f = CoverageFormat::Cobertura;
    let mut report = Report::default();
    let mut seen_root = false;
    let mut file = String::new();
    walk(text, f, |stack, name, a| {
        root_is(stack, name, "coverage", f)?;
        match name {
            "coverage" if stack.is_empty() => {
                seen_root = true;
                report.declared = cobertura_root(a)?;
            }
            "class" => {
                file = a.get("filename").unwrap_or_default().to_owned();
                report.add_file(&file, FileCov::default())?;
            }
            "line"
                if parent(stack) == "lines"
                    && stack.iter().rev().nth(1).is_some_and(|p| p == "class") =>
            {
                let what = |k: &str| format!("<line> {k} in {}", shown_path(&file));
                let n = count(a.get("number").unwrap_or_default(), || what("number"))?;
                let hit = ran(a.get("hits").unwrap_or("0"), || what("hits"))?;
                let mut one = FileCov::default();
                one.add_unit(line(n), Hits { weight: 1, hit }, &file)?;
                report.add_file(&file, one)?;
            }
            _ => {}
        }
        Ok(())
    })?;
    if !seen_root {
        return Err(ReadError::Malformed(f, "no <coverage> element".into()));
    }
    Ok(report)
}

/// The root `<coverage>`'s `lines-covered / lines-valid`, else `line-rate`, checked.
fn cobertura_root(a: &Attrs) -> Result<Option<Declared>, ReadError> {
    // An attribute that is present must be a finite, non-negative number.
    let num = |k: &str| -> Result<Option<f64>, ReadError> {
        let Some(v) = a.get(k) else {
            return Ok(None);
        };
        match v.parse::<f64>() {
            Ok(n) if n.is_finite() && n >= 0.0 => Ok(Some(n)),
            _ => Err(ReadError::Impossible(format!(
                "{k}=\"{}\" is not a non-negative number",
                v.chars().take(40).collect::<String>()
            ))),
        }
    };
    let (covered, valid) = (num("lines-covered")?, num("lines-valid")?);
    let rate = num("line-rate")?;
    if let Some(r) = rate.filter(|r| *r > 1.0) {
        return Err(ReadError::Impossible(format!("line-rate {r} is above 1")));
    }
    Ok(match (covered, valid) {
        (Some(c), Some(v)) if c > v => {
            return Err(ReadError::Impossible(format!(
                "lines-covered {c} > lines-valid {v}"
            )));
        }
        (Some(c), Some(v)) if c.fract() == 0.0 && v.fract() == 0.0 && v < 9.007e15 => {
            Some(Declared::Counts {
                found: v as u64,
                hit: c as u64,
            })
        }
        (_, Some(v)) if v <= 0.0 => Some(Declared::Counts { found: 0, hit: 0 }),
        _ => rate.map(|r| Declared::Percent(r * 100.0)),
    })
}

/// `(found, hit)` of a Clover `<metrics>`: `statements`, `coveredstatements`.
fn clover_metrics(a: &Attrs, of: &str) -> Result<Option<(u64, u64)>, ReadError> {
    let what = |k: &str| format!("<metrics> {k} of {of}");
    let (Some(s), Some(c)) = (a.get("statements"), a.get("coveredstatements")) else {
        return Ok(None);
    };
    let found = count(s, || what("statements"))?;
    let hit = count(c, || what("coveredstatements"))?;
    if hit > found {
        return Err(ReadError::Impossible(format!(
            "<metrics> coveredstatements {hit} > statements {found} of {of}"
        )));
    }
    Ok(Some((found, hit)))
}

/// Clover XML (`<coverage><project><metrics/><package><file><metrics/>…`).
pub fn clover(text: &str) -> Result<Report, ReadError> {
    let f = CoverageFormat::Clover;
    let mut report = Report::default();
    let mut seen_project = false;
    let mut file = String::new();
    walk(text, f, |stack, name, a| {
        root_is(stack, name, "coverage", f)?;
        // Only the code under test: OpenClover's `<testproject>` is the tests' own.
        let in_project = stack.get(1).is_some_and(|p| p == "project");
        match name {
            "project" if stack.len() == 1 => seen_project = true,
            "metrics" if stack.len() == 2 && in_project => {
                if let Some((found, hit)) = clover_metrics(a, "the project")? {
                    report.declared = Some(Declared::Counts { found, hit });
                }
            }
            "file" if in_project => {
                file = a
                    .get("path")
                    .or_else(|| a.get("name"))
                    .unwrap_or_default()
                    .to_owned();
                report.add_file(&file, FileCov::default())?;
            }
            "metrics" if in_project && parent(stack) == "file" => {
                if let Some((found, hit)) = clover_metrics(a, &shown_path(&file))? {
                    report.add_file(&file, FileCov::Counts { found, hit })?;
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    if !seen_project {
        return Err(ReadError::Malformed(f, "no <project> element".into()));
    }
    Ok(report)
}

/// JaCoCo XML (`<report><package><sourcefile><line nr mi ci/>…`).
pub fn jacoco(text: &str) -> Result<Report, ReadError> {
    let f = CoverageFormat::Jacoco;
    let mut report = Report::default();
    let mut seen_root = false;
    let (mut package, mut file) = (String::new(), String::new());
    // A source file's own LINE counter, for one that lists no lines.
    let mut counters: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let line_counter = |a: &Attrs, of: &str| -> Result<Option<(u64, u64)>, ReadError> {
        if a.get("type") != Some("LINE") {
            return Ok(None);
        }
        let what = |k: &str| format!("<counter type=\"LINE\"> {k} of {of}");
        let missed = count(a.get("missed").unwrap_or_default(), || what("missed"))?;
        let covered = count(a.get("covered").unwrap_or_default(), || what("covered"))?;
        let found = super::model::add(missed, covered, "LINE counter")?;
        Ok(Some((found, covered)))
    };
    walk(text, f, |stack, name, a| {
        root_is(stack, name, "report", f)?;
        match name {
            "report" if stack.is_empty() => seen_root = true,
            "package" => package = a.get("name").unwrap_or_default().to_owned(),
            "sourcefile" => {
                let name = a.get("name").unwrap_or_default();
                file = if package.is_empty() {
                    name.to_owned()
                } else {
                    format!("{package}/{name}")
                };
                report.add_file(&file, FileCov::default())?;
            }
            "line" if parent(stack) == "sourcefile" => {
                let what = |k: &str| format!("<line> {k} in {}", shown_path(&file));
                let nr = count(a.get("nr").unwrap_or_default(), || what("nr"))?;
                let mi = count(a.get("mi").unwrap_or("0"), || what("mi"))?;
                let ci = count(a.get("ci").unwrap_or("0"), || what("ci"))?;
                if mi > 0 || ci > 0 {
                    let mut one = FileCov::default();
                    one.add_unit(
                        line(nr),
                        Hits {
                            weight: 1,
                            hit: ci > 0,
                        },
                        &file,
                    )?;
                    report.add_file(&file, one)?;
                }
            }
            "counter" if parent(stack) == "sourcefile" => {
                if let Some(c) = line_counter(a, &shown_path(&file))? {
                    counters.insert(file.clone(), c);
                }
            }
            "counter" if parent(stack) == "report" => {
                if let Some((found, hit)) = line_counter(a, "the report")? {
                    report.declared = Some(Declared::Counts { found, hit });
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    if !seen_root {
        return Err(ReadError::Malformed(f, "no <report> element".into()));
    }
    for (path, (found, hit)) in counters {
        let key = path.trim_start_matches("./").to_owned();
        if report
            .files
            .get(&key)
            .is_some_and(|c| c == &FileCov::default())
        {
            report.files.insert(key, FileCov::Counts { found, hit });
        }
    }
    Ok(report)
}
