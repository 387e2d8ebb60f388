//! AdmissionReview bodies, end to end through the pure parts: decode, read
//! the workload (with the default owner trust, and trusting the requester),
//! judge every image with fixed rules, aggregate, and encode the answer,
//! which must be JSON echoing the request's uid and version and staying
//! inside the API server's limits. The one-pass decoder must read every
//! body as the two-pass one does (same error, same workloads).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::admission::{
    OwnerTrust, decode_review, decode_review_in_two_passes, encode_response,
};
use portcullis_core::engine::{AnswerOptions, ContainerDecision, Subject, aggregate_with};
use portcullis_core::reference::{ImageRef, shown};
use portcullis_core_fuzz::{POLICIES, check_answer, judge};

fuzz_target!(|data: &[u8]| {
    let two_passes = decode_review_in_two_passes(data);
    let review = match decode_review(data) {
        Ok(r) => r,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            assert_eq!(two_passes.err(), Some(e), "the decoders disagree");
            return;
        }
    };
    let two_passes = match two_passes {
        Ok(r) => r,
        Err(e) => panic!("one pass decoded, two passes refused: {e}"),
    };
    let request = &review.request;
    let mut trusting = OwnerTrust::default();
    trusting.controllers.insert(request.user.username.clone());
    for trust in [OwnerTrust::default(), trusting] {
        let read = request.workload(&trust);
        assert_eq!(
            read,
            two_passes.request.workload(&trust),
            "the decoders read different workloads"
        );
        let workload = match read {
            Ok(Some(w)) => w,
            Ok(None) => continue,
            Err(e) => {
                assert!(!e.to_string().is_empty());
                continue;
            }
        };
        if workload.owner.is_some() {
            assert!(trust.controllers.contains(&request.user.username));
        }
        let mut decisions = Vec::new();
        for c in &workload.containers {
            let image = ImageRef::parse(&c.image).ok();
            let subject = Subject {
                namespace: &workload.namespace,
                kind: &workload.kind,
                workload: workload.workload.as_deref(),
                pod_name: workload.pod_name.as_deref(),
                labels: &workload.labels,
                container: Some(&c.name),
                image: image.as_ref(),
                digest: None,
            };
            let shown_image = shown(&c.image);
            decisions.push(ContainerDecision {
                container: c.name.clone(),
                image: shown_image.to_string(),
                decision: judge(&POLICIES, &subject, &shown_image),
            });
        }
        for audit_only in [false, true] {
            let answer = aggregate_with(&decisions, AnswerOptions { audit_only });
            check_answer(&answer);
            let body = encode_response(&review.api_version, &request.uid, &answer);
            let json: serde_json::Value = serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("the answer is not JSON: {e}"));
            assert_eq!(
                json["apiVersion"].as_str(),
                Some(review.api_version.as_str())
            );
            assert_eq!(json["kind"].as_str(), Some("AdmissionReview"));
            assert_eq!(json["response"]["uid"].as_str(), Some(request.uid.as_str()));
            assert_eq!(json["response"]["allowed"].as_bool(), Some(answer.allowed));
            if !answer.allowed {
                assert_eq!(json["response"]["status"]["code"].as_u64(), Some(403));
            }
        }
    }
});
