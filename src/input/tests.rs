use super::*;

#[test]
fn detects_each_format_from_content() {
    let rec = r#"{"schema":1,"backend":"count","pid":1,"comm":"x","start_time":5,"unix_time":1.0,"mono_time":1.0,"fds":3,"limits":{"soft":10,"hard":20},"system":{"allocated":1,"unused":0,"max":9,"nr_open":9}}"#;
    for (text, want) in [
        (rec, Some(Format::Jsonl)),
        (
            r#"{"format":"fdwatch-state","version":1,"processes":[]}"#,
            Some(Format::State),
        ),
        (
            "{\n  \"format\": \"fdwatch-state\",\n  \"version\": 1,\n  \"processes\": []\n}",
            Some(Format::State),
        ),
        (
            r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
            Some(Format::Prometheus),
        ),
        ("unix_time,fds\n1,2\n", Some(Format::Csv)),
        ("1700000000,12,1024\n", Some(Format::Csv)),
        ("1700000000.5,12\n", Some(Format::Csv)),
        ("time,fds\n2026-11-26T10:00:00Z,4\n", Some(Format::Csv)),
        ("hello\n", None),
        ("{\"foo\": 1}", None),
        ("", None),
    ] {
        assert_eq!(detect(text), want, "{text}");
    }
}

#[test]
fn prometheus_values_are_strings_nan_is_skipped_and_limits_pair_by_labels() {
    let text = r#"{"status":"success","data":{"resultType":"matrix","result":[
        {"metric":{"__name__":"process_open_fds","instance":"a","job":"j"},"values":[[100,"5"],[115.5,"NaN"],[130,"7"]]},
        {"metric":{"__name__":"process_max_fds","instance":"a","job":"j"},"values":[[100,"64"],[130,"128"]]},
        {"metric":{"__name__":"process_open_fds","instance":"b","job":"j"},"values":[[100,"1"]]}
    ]}}"#;
    let inp = parse("q.json", text, None).unwrap();
    assert_eq!(inp.format, Format::Prometheus);
    assert_eq!(inp.series.len(), 2);
    let a = &inp.series[0];
    assert_eq!(a.samples.len(), 2);
    assert_eq!(a.samples[0].limits.soft, Some(64));
    assert_eq!(
        a.samples[1].limits.soft,
        Some(128),
        "the limit in force then"
    );
    assert_eq!(a.samples[1].mono_time, 130.0, "unix time is the time axis");
    assert!(
        a.info.notes.iter().any(|n| n.contains("NaN")),
        "{:?}",
        a.info.notes
    );
    let b = &inp.series[1];
    assert_eq!(b.samples[0].limits.soft, None);
    assert!(b
        .info
        .notes
        .iter()
        .any(|n| n.contains("no process_max_fds")));
}

#[test]
fn csv_reads_named_columns_in_any_order_and_rfc3339_times() {
    let text = "fds,time,limit\n4,2026-11-26T10:00:00Z,100\n6,2026-11-26T10:00:10Z,\n";
    let inp = parse("x.csv", text, None).unwrap();
    let s = &inp.series[0].samples;
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].fds, 4);
    assert_eq!(s[0].limits.soft, Some(100));
    assert_eq!(s[1].limits.soft, None);
    assert_eq!(s[1].unix_time - s[0].unix_time, 10.0);
    let err = parse("x.csv", "time,fds\n1,2\n3,abc\n", None).unwrap_err();
    assert!(err.to_string().contains("line 3"), "{err}");
}

#[test]
fn conflicting_samples_at_one_time_keep_the_first() {
    let inp = parse("x.csv", "1,5\n2,6\n2,9\n3,7\n", Some(Format::Csv)).unwrap();
    let s = &inp.series[0];
    assert_eq!(
        s.samples.iter().map(|s| s.fds).collect::<Vec<_>>(),
        [5, 6, 7]
    );
    assert_eq!(s.info.duplicates_dropped, 1);
}

#[test]
fn an_io_error_is_said_once_in_a_context_chain() {
    let dir = tempfile::tempdir().unwrap();
    let err = match open(dir.path(), None) {
        Err(e) => anyhow::Error::from(e),
        Ok(_) => panic!("a directory opened as a recording"),
    };
    let shown = format!("{err:#}");
    assert_eq!(shown.matches("Is a directory").count(), 1, "{shown}");
}

#[test]
fn a_prometheus_error_answer_is_detected_and_its_message_kept() {
    let text = r#"{"status":"error","errorType":"bad_data","error":"1:5: parse error"}"#;
    assert_eq!(detect(text), Some(Format::Prometheus));
    let err = parse("q.json", text, None).unwrap_err().to_string();
    assert!(
        err.contains("bad_data") && err.contains("1:5: parse error"),
        "{err}"
    );
}

#[test]
fn a_line_without_end_is_refused_at_the_cap() {
    let text = "unix_time,fds\n".to_string() + &"1".repeat(MAX_LINE + 10);
    let err = parse("x.csv", &text, Some(Format::Csv))
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 2: longer than 1 MiB"), "{err}");
}

#[test]
fn a_document_over_the_cap_is_refused_before_parsing() {
    let mut text = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#.to_string();
    text.push_str(&" ".repeat(MAX_DOCUMENT as usize));
    let err = parse("q.json", &text, None).unwrap_err().to_string();
    assert!(err.contains("larger than 32 MiB"), "{err}");
}
