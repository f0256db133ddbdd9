//! What S3 accepts as an endpoint, a region and a bucket name: checked before any request, so a
//! bad value is one error naming the setting, never a panic inside the HTTP client (object_store
//! turns an endpoint without a scheme into a request URI it cannot parse).
//!
//! Each check returns, for a bad value, what is wrong and what to write instead.

use http::Uri;

/// An absolute `https://` URL with a host (`http://` only with `allow_http`).
pub(crate) fn endpoint(value: &str, allow_http: bool) -> Result<(), String> {
    const EXAMPLE: &str = "e.g. https://s3.example.com, or http://127.0.0.1:9000 with allow_http = true";
    if value.trim().is_empty() {
        return Err(format!("the endpoint is empty; give the server's URL ({EXAMPLE}), or remove the setting for AWS"));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("an endpoint URL cannot contain spaces or control characters ({EXAMPLE})"));
    }
    let uri: Uri = value.parse().map_err(|e| format!("not a URL ({e}); {EXAMPLE}"))?;
    match uri.scheme_str() {
        None => return Err(format!("no scheme: write https://{value} (or http://{value} with allow_http = true)")),
        Some("https") => {}
        Some("http") if allow_http => {}
        Some("http") => {
            return Err("a plain http:// endpoint needs allow_http = true in the same table or AWS_ALLOW_HTTP=true (or use https://)".into());
        }
        Some(other) => return Err(format!("the scheme {other}:// is not S3's; use https:// ({EXAMPLE})")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("no host in the URL; {EXAMPLE}"));
    }
    let authority = uri.authority().map_or("", |a| a.as_str());
    if let Some((_, port)) = authority.rsplit_once(':')
        && !port.contains(']')
        && port.parse::<u16>().is_err_and(|_| !port.is_empty())
    {
        return Err(format!("the port is not a number from 1 to 65535; {EXAMPLE}"));
    }
    Ok(())
}

/// A region name: letters, digits, `-` and `_` (`us-east-1`, `auto`).
pub(crate) fn region(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("the region is empty; name it (e.g. us-east-1), or remove the setting for AWS_REGION".into());
    }
    if value.len() > 64 || !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err("a region is letters, digits, '-' and '_' (e.g. us-east-1, eu-west-3)".into());
    }
    Ok(())
}

/// S3's bucket naming rules: 3 to 63 characters, lowercase letters, digits, `.` and `-`,
/// starting and ending with a letter or digit, no `..`.
pub(crate) fn bucket(value: &str) -> Result<(), String> {
    // Today's rules are 3 to 63 lowercase letters, digits, '.' and '-'; buckets made in
    // us-east-1 before 2018 may also have capitals and '_' and be up to 255 long, so those pass.
    const RULES: &str = "S3 bucket names are 3 to 63 lowercase letters, digits, '.' and '-', starting and ending with a \
                         letter or digit";
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let fits = (3..=255).contains(&value.len())
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && alnum(value.chars().next())
        && alnum(value.chars().last())
        && !value.contains("..");
    if fits { Ok(()) } else { Err(format!("{RULES}; check the name")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_must_be_absolute_http_urls_with_a_host() {
        for good in ["https://s3.example.com", "https://s3.example.com:9000/", "https://[::1]:9000"] {
            endpoint(good, false).unwrap_or_else(|e| panic!("{good:?}: {e}"));
        }
        endpoint("http://127.0.0.1:9000", true).expect("http with allow_http");
        for (bad, says) in [
            ("127.0.0.1:9000", "no scheme"),
            ("localhost", "no scheme"),
            ("ftp://x", "ftp://"),
            ("http://exa mple.com", "spaces"),
            ("", "empty"),
            ("  ", "empty"),
            ("http://127.0.0.1:9000", "allow_http"),
            ("https://", "URL"),
            ("https://host:99999", "port"),
        ] {
            let reason = endpoint(bad, false).expect_err(bad);
            assert!(reason.contains(says), "{bad:?}: {reason}");
        }
    }

    #[test]
    fn regions_are_plain_names() {
        for good in ["us-east-1", "auto", "eu_west_3"] {
            region(good).unwrap_or_else(|e| panic!("{good:?}: {e}"));
        }
        for bad in ["", "us east 1", "us-east-1\n", "a/b", "région"] {
            assert!(region(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn buckets_follow_s3_naming_rules() {
        // Legacy us-east-1 names (capitals, '_', up to 255 long) still exist and pass.
        for good in ["abc", "promote-test", "my.bucket.1", &"a".repeat(63), "Legacy_Bucket", &"a".repeat(255)] {
            bucket(good).unwrap_or_else(|e| panic!("{good:?}: {e}"));
        }
        for bad in ["ab", &"a".repeat(256), "a/b", "-dash", "dash-", ".dot", "a..b", "with space", "", "é-bucket"] {
            assert!(bucket(bad).is_err(), "{bad:?}");
        }
    }
}
