//! Who may read a stream: a read token on every route; no or a wrong token 401, an unknown stream
//! 404, bad values 400 naming the value.

use crate::common::*;
use crate::support::*;

fn status(url: &str, method: &str, auth: Option<&str>, body: Option<&str>) -> (u16, String) {
    let a = agent();
    let resp = match method {
        "GET" => {
            let mut r = a.get(url);
            if let Some(t) = auth {
                r = r.header("authorization", format!("Bearer {t}"));
            }
            r.call()
        }
        _ => {
            let mut r = a.post(url).header("content-type", "application/json");
            if let Some(t) = auth {
                r = r.header("authorization", format!("Bearer {t}"));
            }
            r.send(body.unwrap_or("{}"))
        }
    };
    let mut resp = resp.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap_or_default())
}

#[test]
fn stream_routes_need_a_valid_token_and_a_known_stream() {
    let h = harness();
    let gw = h.start();
    let base = stream_url(&gw);
    let routes = [("GET", "events"), ("GET", "ws"), ("GET", "poll"), ("POST", "ack")];
    for (method, route) in routes {
        let url = format!("{base}/{route}");
        assert_eq!(status(&url, method, None, None).0, 401, "{method} {route} without a token");
        assert_eq!(status(&url, method, Some("mxh_wrong"), None).0, 401, "{method} {route} with a wrong token");
        let other = format!("http://{}/v1/streams/nope/{route}", gw.http);
        let (code, body) = status(&other, method, Some(TOKEN), Some(r#"{"consumer":"c","cursor":0}"#));
        assert_eq!(code, 404, "{method} {route} of an unknown stream: {body}");
    }
    for (query, names) in [
        ("after=-1", "after"),
        ("after=x", "after"),
        ("wait=31", "wait"),
        ("limit=1000", "limit"),
        ("from=yesterday", "from"),
        ("types=email.nope", "email.nope"),
        ("consumer=a%20b", "consumer"),
        ("iterator=bm9wZTox", "iterator"),
    ] {
        let (code, body) = status(&format!("{base}/poll?{query}"), "GET", Some(TOKEN), None);
        assert_eq!(code, 400, "{query}: {body}");
        assert!(body.contains(names), "{query}: {body}");
    }
    let (code, body) = status(&format!("{base}/events?after=-3"), "GET", Some(TOKEN), None);
    assert_eq!(code, 400, "{body}");
    // An ack past the newest event would skip events not written yet.
    let (code, body) = status(&format!("{base}/ack"), "POST", Some(TOKEN), Some(r#"{"consumer":"w","cursor":99}"#));
    assert_eq!(code, 400, "{body}");
    let (code, body) = status(&format!("{base}/ack"), "POST", Some(TOKEN), Some(r#"{"consumer":"w","cursor":0}"#));
    assert_eq!((code, body.contains("\"acked\":0")), (200, true), "{body}");
    drop(h);
}
