//! A small RFC 4180 CSV reader that remembers the line each record starts on, for error messages.
//! Quoted fields may hold commas, doubled quotes and newlines; CRLF and a UTF-8 BOM are accepted.
//! Public so that other crates (the CLI's `caption --output FILE.csv`, its tests) read CSV the same way.

/// One record and the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub line: usize,
    pub fields: Vec<String>,
}

/// Splits `text` into records; blank lines are skipped. Errors carry the 1-based line number and a message
/// (for a quoted field that is never closed, the line its opening quote is on).
pub fn parse(text: &str) -> Result<Vec<Record>, (usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Vec::new();
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut line = 1;
    let mut start_line = 1;
    let mut in_quotes = false;
    let mut was_quoted = false;
    let mut quote_line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() && !was_quoted => {
                in_quotes = true;
                was_quoted = true;
                quote_line = line;
            }
            '"' => {
                return Err((
                    line,
                    "a quote inside an unquoted field (quote the whole field and double the quote)"
                        .into(),
                ))
            }
            ',' => {
                fields.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                fields.push(std::mem::take(&mut field));
                was_quoted = false;
                if !(fields.len() == 1 && fields[0].is_empty()) {
                    records.push(Record { line: start_line, fields: std::mem::take(&mut fields) });
                }
                fields.clear();
                line += 1;
                start_line = line;
            }
            _ if was_quoted => {
                return Err((line, format!("unexpected {c:?} after a closing quote")));
            }
            _ => field.push(c),
        }
    }
    if in_quotes {
        return Err((quote_line, "a quoted field is never closed".into()));
    }
    if !field.is_empty() || !fields.is_empty() || was_quoted {
        fields.push(field);
        records.push(Record { line: start_line, fields });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_commas_newlines_and_lines() {
        let r = parse("a,b\r\n\"x, y\",\"say \"\"hi\"\"\"\n\"multi\nline\",z\n\nlast,1").unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(r[1].fields, vec!["x, y", "say \"hi\""]);
        assert_eq!((r[2].line, r[2].fields[0].as_str()), (3, "multi\nline"));
        assert_eq!((r[3].line, r[3].fields[1].as_str()), (6, "1"));
    }

    #[test]
    fn broken_quotes_are_located() {
        assert_eq!(parse("a,b\n\"open,1\n2\n").unwrap_err().0, 2);
        assert_eq!(parse("a,b\nx\"y,1\n").unwrap_err().0, 2);
        // the line of the opening quote, not of the record's start
        assert_eq!(parse("a,b\n\"multi\nline\",\"open\n").unwrap_err().0, 3);
    }
}
