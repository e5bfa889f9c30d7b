//! A plain text table: a header of column names in capitals, one line per row, columns as wide
//! as their widest cell and two spaces apart, trailing blanks trimmed, `(none)` under the
//! header of an empty table. Rows can be typed items serialised to JSON ([`Table::json_rows`]):
//! a missing or null field prints `-`, a float three decimals, a list comma-joined.

use serde_json::Value;

/// A table being built.
#[derive(Clone, Debug, Default)]
pub struct Table {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these columns (names as the header shows them, upper-cased).
    pub fn new<S: AsRef<str>>(columns: &[S]) -> Table {
        Table {
            columns: columns.iter().map(|c| c.as_ref().to_uppercase()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds one row (cells beyond the columns are ignored, missing cells print `-`).
    pub fn row(&mut self, cells: Vec<String>) -> &mut Table {
        let mut cells = cells;
        cells.resize(self.columns.len(), "-".to_owned());
        self.rows.push(cells);
        self
    }

    /// A table of JSON objects: column `c` shows each object's field `c`.
    pub fn json_rows(columns: &[&str], items: &[Value]) -> Table {
        let mut t = Table::new(columns);
        for item in items {
            t.row(columns.iter().map(|c| cell(item.get(*c))).collect());
        }
        t
    }

    /// The table as text, one line per row, each line ended by a newline.
    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain([self.columns[i].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            let mut l = String::new();
            for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
                if i > 0 {
                    l.push_str("  ");
                }
                l.push_str(&format!("{c:<w$}"));
            }
            l.trim_end().to_owned() + "\n"
        };
        let mut out = line(&self.columns);
        for r in &self.rows {
            out.push_str(&line(r));
        }
        if self.rows.is_empty() {
            out.push_str("(none)\n");
        }
        out
    }
}

/// How one JSON value prints in a cell.
pub fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.3}"),
            _ => n.to_string(),
        },
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let items = [
            json!({"agent": "5001", "state": "Talking", "team": null}),
            json!({"agent": "5002222", "state": "NotReady", "team": "t1", "extra": 1}),
        ];
        let text = Table::json_rows(&["agent", "team", "state"], &items).render();
        assert_eq!(
            text,
            "AGENT    TEAM  STATE\n\
             5001     -     Talking\n\
             5002222  t1    NotReady\n"
        );
    }

    #[test]
    fn an_empty_table_says_so() {
        assert_eq!(Table::new(&["a", "bb"]).render(), "A  BB\n(none)\n");
    }

    #[test]
    fn cells_print_numbers_lists_and_gaps_plainly() {
        assert_eq!(cell(Some(&json!(1.5))), "1.500");
        assert_eq!(cell(Some(&json!(7))), "7");
        assert_eq!(cell(Some(&json!(["PCMU", 8]))), "PCMU,8");
        assert_eq!(cell(Some(&json!(true))), "true");
        assert_eq!(cell(None), "-");
        let mut t = Table::new(&["x", "y"]);
        t.row(vec!["only x".into()]);
        assert_eq!(t.render(), "X       Y\nonly x  -\n");
    }
}
