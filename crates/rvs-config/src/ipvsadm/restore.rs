//! The `-R` reader (`config_stream_read` of ipvsadm 1.31): one invocation per line, words split
//! on blanks, tabs and carriage returns; a word equal to `ipvsadm` is dropped wherever it is;
//! lines without words are skipped. There are no comments: the reader means to skip text after
//! `#`, but only looks for it in the one blank that ends a word, so `#` is an ordinary word
//! (a line starting with `#` ends the restore with the "Try" line, a `#` later on the line is an
//! `unexpected argument #`). The last line needs no newline.

/// The words of each line of `-R` input that ipvsadm runs, in order.
pub fn restore_lines(input: &str) -> Vec<Vec<&str>> {
    input
        .split('\n')
        .map(|line| {
            line.split([' ', '\t', '\r'])
                .filter(|w| !w.is_empty() && *w != "ipvsadm")
                .collect::<Vec<_>>()
        })
        .filter(|words| !words.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::restore_lines;

    #[test]
    fn splits_like_config_stream_read() {
        let got = restore_lines("ipvsadm -A -t 10.0.0.3:80\n\n   \n\t-A\t-u x:53 ipvsadm\r\n# c");
        assert_eq!(
            got,
            vec![
                vec!["-A", "-t", "10.0.0.3:80"],
                vec!["-A", "-u", "x:53"],
                vec!["#", "c"]
            ]
        );
    }
}
