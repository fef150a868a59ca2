//! The skip list: known failing cases, one per line as `<file>: <eval line> ## <reason>`.

/// Cases expected to fail, each with the reason. Lines starting with `#` are comments.
#[derive(Clone, Debug, Default)]
pub struct SkipList {
    entries: Vec<SkipEntry>,
}

#[derive(Clone, Debug)]
pub struct SkipEntry {
    pub file: String,
    pub text: String,
    pub reason: String,
}

impl SkipList {
    pub fn parse(input: &str) -> Result<SkipList, String> {
        let mut entries = Vec::new();
        for (i, l) in input.lines().enumerate() {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (case, reason) = l
                .rsplit_once(" ## ")
                .ok_or_else(|| format!("skip list line {}: missing ' ## <reason>'", i + 1))?;
            let (file, text) = case
                .split_once(": ")
                .ok_or_else(|| format!("skip list line {}: missing '<file>: '", i + 1))?;
            if reason.trim().is_empty() {
                return Err(format!("skip list line {}: empty reason", i + 1));
            }
            entries.push(SkipEntry {
                file: file.trim().to_string(),
                text: text.trim().to_string(),
                reason: reason.trim().to_string(),
            });
        }
        Ok(SkipList { entries })
    }

    /// The reason a case of `file` is skipped, if it is.
    pub fn reason(&self, file: &str, text: &str) -> Option<&str> {
        self.entries.iter().find(|e| e.file == file && e.text == text).map(|e| e.reason.as_str())
    }

    pub fn entries(&self) -> &[SkipEntry] {
        &self.entries
    }
}
