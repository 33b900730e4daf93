//! The stream options, `<prefix>stream_interval`, `<prefix>stream_max_corrections` and
//! `<prefix>stream_timeout`, as validated values. Every refusal names the option of the module
//! that is running, so the operator sees which line of the config to fix when it loads.

use std::time::Duration;

/// The most corrections one answer may get. A chain of edits is kept whole by the clients that
/// show it (one Matrix bot's 1,000 edits of one message made its room unloadable); a hundred
/// at one a second is already a minute and a half of live text.
pub const MAX_CORRECTIONS: u32 = 100;

/// How a streamed answer is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOptions {
    /// `<prefix>stream_interval`: the shortest time between two stanzas of one answer.
    pub interval: Duration,
    /// `<prefix>stream_max_corrections`: the most corrections one answer gets, the final one
    /// included; so an answer is at most this many stanzas plus its first message.
    pub max_corrections: u32,
    /// `<prefix>stream_timeout`: the longest a stream may last, from its first byte.
    pub timeout: Duration,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions { interval: Duration::from_secs(1), max_corrections: 30, timeout: Duration::from_secs(300) }
    }
}

impl StreamOptions {
    /// Validates the raw values of the options of the module whose options start with `prefix`
    /// (`component_post_`, `rest_`), each already read as a number (`None` when not set).
    pub fn parse(
        prefix: &str,
        interval: Option<f64>,
        max_corrections: Option<f64>,
        timeout: Option<f64>,
    ) -> Result<StreamOptions, String> {
        let mut options = StreamOptions::default();
        if let Some(n) = interval {
            options.interval = crate::options::duration(&format!("{prefix}stream_interval"), n)?;
        }
        if let Some(n) = max_corrections {
            let name = format!("{prefix}stream_max_corrections");
            options.max_corrections = crate::options::whole(&name, n, 1, MAX_CORRECTIONS.into())? as u32;
        }
        if let Some(n) = timeout {
            options.timeout = crate::options::duration(&format!("{prefix}stream_timeout"), n)?;
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_valid_values() {
        assert_eq!(
            StreamOptions::parse("component_post_", None, None, None),
            Ok(StreamOptions {
                interval: Duration::from_secs(1),
                max_corrections: 30,
                timeout: Duration::from_secs(300)
            })
        );
        assert_eq!(
            StreamOptions::parse("rest_", Some(0.25), Some(1.0), Some(86_400.0)),
            Ok(StreamOptions {
                interval: Duration::from_millis(250),
                max_corrections: 1,
                timeout: Duration::from_secs(86_400)
            })
        );
    }

    #[test]
    fn refusals_name_the_running_modules_option() {
        for (interval, max, timeout, message) in [
            (
                Some(0.0),
                None,
                None,
                "rest_stream_interval must be a number of seconds above 0 and at most 86400, not 0",
            ),
            (
                Some(f64::NAN),
                None,
                None,
                "rest_stream_interval must be a number of seconds above 0 and at most 86400, not NaN",
            ),
            (None, Some(0.0), None, "rest_stream_max_corrections must be a whole number from 1 to 100, not 0"),
            (None, Some(2.5), None, "rest_stream_max_corrections must be a whole number from 1 to 100, not 2.5"),
            (None, Some(101.0), None, "rest_stream_max_corrections must be a whole number from 1 to 100, not 101"),
            (
                None,
                None,
                Some(-1.0),
                "rest_stream_timeout must be a number of seconds above 0 and at most 86400, not -1",
            ),
            (
                None,
                None,
                Some(86_401.0),
                "rest_stream_timeout must be a number of seconds above 0 and at most 86400, not 86401",
            ),
        ] {
            assert_eq!(StreamOptions::parse("rest_", interval, max, timeout), Err(message.to_owned()));
        }
    }
}
