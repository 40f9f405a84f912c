//! The optional `.env` file: found like dotenvy finds it (this folder, then its parents), checked
//! whole before any of it is used.
//!
//! dotenvy stops at the first line it cannot parse, having set the lines before it and none
//! after; the start then reported every later variable as missing, and the line at fault was
//! never named. Here a file with a bad line sets nothing, and the error names the file, the
//! line and what is wrong with it, never the value (it may be a secret).

use std::fmt;
use std::path::{Path, PathBuf};

/// Where a usable `.env` was loaded from (`None`: there is none).
pub type Loaded = Option<PathBuf>;

/// Why the `.env` file was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFileError {
    pub path: PathBuf,
    /// 1-based; where the entry that cannot be read begins.
    pub line: Option<usize>,
    pub reason: String,
}

impl fmt::Display for EnvFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} line {line}: {}", self.path.display(), self.reason)?,
            None => write!(f, "{}: {}", self.path.display(), self.reason)?,
        }
        write!(f, " (nothing from this file was used)")
    }
}

impl std::error::Error for EnvFileError {}

/// Finds `.env` in the working directory or a parent; if every line parses, sets the variables
/// not already in the environment (the environment wins, as with dotenvy).
pub fn load() -> Result<Loaded, EnvFileError> {
    let Some(path) = std::env::current_dir().ok().as_deref().and_then(find) else {
        return Ok(None);
    };
    load_from(&path)?;
    Ok(Some(path))
}

fn find(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|dir| dir.join(".env"))
        .find(|candidate| candidate.is_file())
}

fn load_from(path: &Path) -> Result<(), EnvFileError> {
    check(path)?;
    dotenvy::from_path(path).map_err(|err| EnvFileError {
        path: path.to_path_buf(),
        line: None,
        reason: err.to_string(),
    })
}

/// Every entry of the file parses, or the first that does not, located and explained.
pub(crate) fn check(path: &Path) -> Result<(), EnvFileError> {
    let text = std::fs::read_to_string(path).map_err(|err| EnvFileError {
        path: path.to_path_buf(),
        line: None,
        reason: format!("cannot be read: {err}"),
    })?;
    if parses(&text) {
        return Ok(());
    }
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    // A quoted value may span lines, so a prefix cut inside one fails although the file is
    // fine there; the entry at fault begins after the longest prefix that parses.
    let good = (0..lines.len())
        .rev()
        .find(|&n| parses(&lines[..n].concat()))
        .unwrap_or(0);
    Err(EnvFileError {
        path: path.to_path_buf(),
        line: Some(good + 1),
        reason: explain(&lines[good..].concat()),
    })
}

fn parses(text: &str) -> bool {
    dotenvy::from_read_iter(text.as_bytes()).all(|item| item.is_ok())
}

/// What is wrong with the entry that begins `rest`'s first line, without echoing its value.
fn explain(rest: &str) -> String {
    let line = rest.lines().next().unwrap_or("").trim();
    let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
    let Some((name, value)) = line.split_once('=') else {
        return "not a NAME=value line (a comment starts with #)".into();
    };
    let name = name.trim_end();
    let valid_name = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if !valid_name {
        return "the part before `=` is not a variable name (letters, digits and _)".into();
    }
    let value = value.trim_start();
    let quote = value.chars().next().filter(|c| matches!(c, '"' | '\''));
    if let Some(quote) = quote
        && !rest.trim_end()[rest.find(quote).unwrap_or(0) + 1..].contains(quote)
    {
        return format!("{name}: the value's opening {quote} is never closed");
    }
    if quote.is_none()
        && value
            .split('#')
            .next()
            .unwrap_or("")
            .trim()
            .contains(char::is_whitespace)
    {
        return format!(
            "{name}: the value has a space in it; put the value in quotes: {name}=\"...\""
        );
    }
    format!("{name}: the value cannot be read (check its quotes, backslashes and ${{...}})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(text: &str) -> EnvFileError {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, text).unwrap();
        check(&path).expect_err("the file has a bad line")
    }

    #[test]
    fn an_unquoted_space_is_named_with_its_line_and_not_its_value() {
        let err = problem(
            "# comment\nFACEBOOK_APP_ID=123456789012345\n\nFACEBOOK_REDIRECT_URI=not a url\nSTATE_TOKEN_SECRET=x\n",
        );
        assert_eq!(err.line, Some(4));
        assert!(err.reason.contains("FACEBOOK_REDIRECT_URI"), "{err}");
        assert!(err.reason.contains("quotes"), "{err}");
        let shown = err.to_string();
        assert!(
            !shown.contains("not a url"),
            "the value is not echoed: {shown}"
        );
        assert!(shown.contains(".env line 4"), "{shown}");
    }

    #[test]
    fn a_quoted_value_spanning_lines_is_not_the_culprit() {
        let err = problem("A=\"one\ntwo\"\nB=ok\nC=sec ret\n");
        assert_eq!(err.line, Some(4), "{err}");
        assert!(err.reason.starts_with("C:"), "{err}");
    }

    #[test]
    fn an_unclosed_quote_and_a_bad_name_and_no_equals_are_explained() {
        let err = problem("A=1\nSECRET=\"abc\n");
        assert_eq!(err.line, Some(2));
        assert!(err.reason.contains("never closed"), "{err}");
        assert!(!err.to_string().contains("abc"));

        let err = problem("A=1\n9LIVES=yes\n");
        assert_eq!(err.line, Some(2));
        assert!(err.reason.contains("variable name"), "{err}");

        let err = problem("A=1\nB=2\njust words\n");
        assert_eq!(err.line, Some(3));
        assert!(err.reason.contains("NAME=value"), "{err}");
    }

    #[test]
    fn a_good_file_passes_with_quotes_comments_and_export() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(
            &path,
            "# c\nexport A=1\nB=\"two words\" # note\nC='x y'\nD=\n\nE=\"multi\nline\"\n",
        )
        .unwrap();
        assert_eq!(check(&path), Ok(()));
    }

    #[test]
    fn the_nearest_env_file_up_the_tree_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::write(dir.path().join(".env"), "A=1\n").unwrap();
        assert_eq!(find(&nested), Some(dir.path().join(".env")));
        std::fs::create_dir(nested.join(".env")).unwrap(); // a folder is not the file
        assert_eq!(find(&nested), Some(dir.path().join(".env")));
    }
}
