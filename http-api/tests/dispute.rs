//! `opml dispute` end to end on the digits CNN fixture: a cheating server
//! loses to the honest challenger, a false challenge loses to the honest
//! server, and bad arguments get the bad-input exit code.

mod opml_cli;

use opml_cli::{fixtures, json, opml};

#[test]
fn dispute_games_are_won_by_the_honest_side() {
    let tmp = std::env::temp_dir().join(format!("opml-dispute-{}", std::process::id()));
    let art = tmp.join("digits");
    let model = fixtures().join("model.onnx");
    let (code, _, err) = opml(&[
        "lower",
        model.to_str().unwrap(),
        "--out",
        art.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let input = fixtures().join("sample_input.npy");
    let dispute = |extra: &[&str]| {
        let mut args = vec![
            "dispute",
            art.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        opml(&args)
    };
    for (cheat, at, k, winner, reason) in [
        ("wrong-output", None, "2", "challenger", "OneStepProof"),
        ("wrong-root", Some("3"), "3", "challenger", "OneStepProof"),
        ("invalid-proof", None, "2", "challenger", "Timeout"),
        (
            "false-challenge",
            Some("2"),
            "4",
            "defender",
            "OneStepProof",
        ),
        ("silent-challenger", Some("0"), "2", "defender", "Timeout"),
    ] {
        let mut args = vec!["--cheat", cheat, "--k", k, "--json"];
        if let Some(at) = at {
            args.extend_from_slice(&["--at", at]);
        }
        let (code, out, err) = dispute(&args);
        assert_eq!(code, 0, "{cheat}: {err}");
        let r = json(&out);
        assert_eq!(r["winner"], winner, "{cheat}: {r}");
        assert_eq!(r["reason"], reason, "{cheat}: {r}");
        assert!(r["rounds"].as_u64().unwrap() <= r["round_bound"].as_u64().unwrap());
        if reason == "OneStepProof" {
            let bytes = r["one_step_proof_bytes"].as_u64().unwrap();
            assert!(bytes > 0 && bytes <= 64 << 10, "{bytes}");
        }
    }
    let (code, out, _) = dispute(&["--cheat", "stage1-lie", "--at", "2"]);
    assert_eq!(code, 0);
    assert!(out.contains("winner: challenger"), "{out}");
    assert!(out.contains("disputed: node"), "{out}");
    let (code, _, err) = dispute(&["--cheat", "bogus"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = dispute(&["--cheat", "wrong-root", "--at", "999"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = dispute(&["--cheat", "wrong-root", "--k", "17"]);
    assert_eq!(code, 2, "{err}");
    let _ = std::fs::remove_dir_all(&tmp);
}
