//! Tables for people: columns as wide as their widest cell, three spaces apart.

/// Renders rows (the first is the header) as aligned text, one line per row.
pub fn render<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < N {
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
