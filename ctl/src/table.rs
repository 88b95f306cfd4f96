//! Tables for people: columns as wide as their widest cell, three spaces apart.

/// Renders rows (the first is the header) as aligned text, one line per row.
pub fn render<const N: usize>(rows: &[[String; N]]) -> String {
    let rows: Vec<&[String]> = rows.iter().map(|r| r.as_slice()).collect();
    render_rows(&rows)
}

/// [`render`] for rows whose width is known only at run time (the last cell of a row takes
/// the rest of the line).
pub fn render_rows<R: AsRef<[String]>>(rows: &[R]) -> String {
    let n = rows.iter().map(|r| r.as_ref().len()).max().unwrap_or(0);
    let mut widths = vec![0usize; n];
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r.as_ref()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let r = r.as_ref();
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < r.len() {
                line.extend(std::iter::repeat_n(
                    ' ',
                    widths[i] - cell.chars().count() + 3,
                ));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn aligns() {
        let rows = [
            ["A".to_string(), "B".to_string()],
            ["long".to_string(), "x".to_string()],
        ];
        assert_eq!(super::render(&rows), "A      B\nlong   x\n");
    }
}
