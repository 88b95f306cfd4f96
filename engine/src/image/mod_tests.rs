//! Tests of the facade's lookups (no storage driver needed: the records are seeded).

use super::*;
use crate::config::StorageConfig;
use store::{ImageLayer, LayerRecord};

fn layer(n: u8) -> (ImageLayer, LayerRecord) {
    let d = Digest::of(&[n]).to_string();
    (
        ImageLayer {
            digest: d.clone(),
            media_type: archive::media::OCI_LAYER.into(),
            size: 1,
            diff_id: d.clone(),
            chain_id: d.clone(),
        },
        LayerRecord {
            chain_id: d.clone(),
            diff_id: d.clone(),
            blob: d,
            size: 1,
            parent: None,
        },
    )
}

async fn images() -> (tempfile::TempDir, Images) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path().join("db")).unwrap();
    let content = ContentStore::open(dir.path()).unwrap();
    let cfg = StorageConfig {
        address: Some(dir.path().join("no.sock")),
        ..Default::default()
    };
    let storage = Storage::start(&cfg, dir.path(), dir.path(), "info")
        .await
        .unwrap();
    let images = Images::new(&db, content, storage, dir.path()).unwrap();
    (dir, images)
}

fn seed(i: &Images, config: &[u8], manifest: &str, created: i64, tags: &[&str]) -> String {
    let id = i.content.write(config, None).unwrap().0.to_string();
    let (l, lr) = layer(created as u8);
    let rec = ImageRecord {
        id: id.clone(),
        manifest_digest: manifest.into(),
        manifest_media_type: archive::media::OCI_MANIFEST.into(),
        layers: vec![l],
        size: 1,
        created,
        tags: vec![],
    };
    let tags: Vec<String> = tags
        .iter()
        .map(|t| Reference::parse(t).unwrap().to_string())
        .collect();
    i.meta.put_image(&rec, &[lr], &tags).unwrap();
    id
}

#[tokio::test]
async fn resolve_by_name_id_prefix_and_digest() {
    let (_d, i) = images().await;
    let md = format!("sha256:{}", "c".repeat(64));
    let a = seed(
        &i,
        br#"{"os":"linux","created":"2024-01-01T00:00:00Z"}"#,
        &md,
        10,
        &["busybox", "me/app:1"],
    );
    let b = seed(&i, br#"{"os":"linux"}"#, "sha256:x", 20, &[]);
    assert_eq!(i.resolve("busybox").unwrap().id, a);
    assert_eq!(i.resolve("docker.io/library/busybox:latest").unwrap().id, a);
    assert_eq!(i.resolve("me/app:1").unwrap().id, a);
    assert_eq!(i.resolve(&a).unwrap().id, a);
    assert_eq!(i.resolve(&a[7..19]).unwrap().id, a);
    assert_eq!(i.resolve(&b["sha256:".len()..]).unwrap().id, b);
    assert_eq!(i.resolve(&format!("busybox@{md}")).unwrap().id, a);
    assert!(matches!(
        i.resolve("me/app:2"),
        Err(ImageError::NotFound(_))
    ));
    assert!(matches!(i.resolve("Bad"), Err(ImageError::Reference(_))));
    assert!(matches!(i.resolve(""), Err(ImageError::Reference(_))));
    // Newest first; untagged images have no tags.
    let list = i.list().unwrap();
    assert_eq!(
        list.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
        [b.clone(), a.clone()]
    );
    assert_eq!(list[1].tags, ["busybox:latest", "me/app:1"]);
    i.tag(&b, "me/app:1").unwrap();
    assert_eq!(i.resolve("me/app:1").unwrap().id, b, "the tag moved");
    assert!(matches!(
        i.tag("nosuch", "x:1"),
        Err(ImageError::NotFound(_))
    ));
    assert!(matches!(
        i.tag(&b, "x@sha256:abc"),
        Err(ImageError::Reference(_))
    ));
    let doc = i.inspect("busybox").unwrap();
    assert_eq!(doc["RepoTags"], serde_json::json!(["busybox:latest"]));
    assert_eq!(
        doc["RepoDigests"],
        serde_json::json!([format!("busybox@{md}")])
    );
    assert_eq!(doc["Created"], "2024-01-01T00:00:00Z");
    assert_eq!(doc["GraphDriver"]["Name"], "external");
    assert_eq!(i.to_status_of("nosuch"), tonic::Code::NotFound);
}

#[tokio::test]
async fn ambiguous_prefixes_are_refused() {
    let (_d, i) = images().await;
    // Find two configs whose ids share a first hex digit.
    let mut ids: Vec<String> = Vec::new();
    for n in 0..40 {
        ids.push(seed(&i, format!("{{\"n\":{n}}}").as_bytes(), "m", n, &[]));
    }
    // 40 ids over 16 first digits: some digit starts two of them.
    let shared = (0..16)
        .map(|d| format!("{d:x}"))
        .find(|d| ids.iter().filter(|x| x[7..8] == **d).count() > 1)
        .unwrap();
    assert!(matches!(i.resolve(&shared), Err(ImageError::Ambiguous(_))));
}

impl Images {
    fn to_status_of(&self, s: &str) -> tonic::Code {
        self.resolve(s)
            .map_or_else(|e| e.to_status().code(), |_| tonic::Code::Ok)
    }
}
