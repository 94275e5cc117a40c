//! A schema check of deploy/k8s/*.yaml, without a cluster: every object is read into typed
//! structs that mirror the Kubernetes API (batch/v1 Job, apps/v1 Deployment, v1 Service,
//! ConfigMap, Secret, PersistentVolumeClaim) and refuse unknown fields, so a misspelt or
//! misplaced field, a wrong type or an invalid enum value fails here as `kubectl apply
//! --dry-run` would. The subset covers the fields these manifests use; a new field needs a
//! line here. Then what the manifests promise: the Job's parallelism, --worker-count and the
//! merge list agree, the worker index comes from the completion index, and the pods spread.

// Most fields exist to be checked by deserialization, not to be read afterwards.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

type Labels = BTreeMap<String, String>;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Meta {
    name: String,
    #[serde(default)]
    labels: Labels,
    #[serde(default)]
    annotations: Labels,
}

#[derive(Deserialize, Debug)]
#[serde(tag = "kind", deny_unknown_fields)]
enum Object {
    Job {
        #[serde(rename = "apiVersion")]
        api: ApiBatchV1,
        metadata: Meta,
        spec: JobSpec,
    },
    Deployment {
        #[serde(rename = "apiVersion")]
        api: ApiAppsV1,
        metadata: Meta,
        spec: DeploymentSpec,
    },
    Service {
        #[serde(rename = "apiVersion")]
        api: ApiV1,
        metadata: Meta,
        spec: ServiceSpec,
    },
    ConfigMap {
        #[serde(rename = "apiVersion")]
        api: ApiV1,
        metadata: Meta,
        data: Labels,
    },
    Secret {
        #[serde(rename = "apiVersion")]
        api: ApiV1,
        metadata: Meta,
        #[serde(rename = "type")]
        kind: String,
        #[serde(rename = "stringData")]
        string_data: Labels,
    },
    PersistentVolumeClaim {
        #[serde(rename = "apiVersion")]
        api: ApiV1,
        metadata: Meta,
        spec: PvcSpec,
    },
}

#[derive(Deserialize, Debug)]
enum ApiBatchV1 {
    #[serde(rename = "batch/v1")]
    V1,
}
#[derive(Deserialize, Debug)]
enum ApiAppsV1 {
    #[serde(rename = "apps/v1")]
    V1,
}
#[derive(Deserialize, Debug)]
enum ApiV1 {
    #[serde(rename = "v1")]
    V1,
}

#[derive(Deserialize, Debug, PartialEq)]
enum CompletionMode {
    Indexed,
    NonIndexed,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct JobSpec {
    completion_mode: Option<CompletionMode>,
    completions: Option<u32>,
    parallelism: Option<u32>,
    backoff_limit: Option<u32>,
    template: PodTemplate,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Selector {
    #[serde(rename = "matchLabels")]
    match_labels: Labels,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct DeploymentSpec {
    replicas: Option<u32>,
    selector: Selector,
    template: PodTemplate,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct PodTemplate {
    metadata: Option<TemplateMeta>,
    spec: PodSpec,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct TemplateMeta {
    #[serde(default)]
    labels: Labels,
    #[serde(default)]
    annotations: Labels,
}

#[derive(Deserialize, Debug, PartialEq)]
enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PodSpec {
    restart_policy: Option<RestartPolicy>,
    termination_grace_period_seconds: Option<u32>,
    affinity: Option<Affinity>,
    security_context: Option<PodSecurity>,
    #[serde(default)]
    init_containers: Vec<Container>,
    containers: Vec<Container>,
    #[serde(default)]
    volumes: Vec<Volume>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Affinity {
    pod_anti_affinity: AntiAffinity,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct AntiAffinity {
    #[serde(rename = "requiredDuringSchedulingIgnoredDuringExecution")]
    required: Vec<AffinityTerm>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AffinityTerm {
    topology_key: String,
    label_selector: Selector,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct PodSecurity {
    sysctls: Vec<NameValue>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct NameValue {
    name: String,
    value: String,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Container {
    name: String,
    image: String,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<EnvVar>,
    #[serde(default)]
    ports: Vec<ContainerPort>,
    resources: Option<Resources>,
    #[serde(default)]
    volume_mounts: Vec<VolumeMount>,
    readiness_probe: Option<Probe>,
    liveness_probe: Option<Probe>,
    security_context: Option<ContainerSecurity>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EnvVar {
    name: String,
    value_from: Option<EnvSource>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EnvSource {
    field_ref: FieldRef,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FieldRef {
    field_path: String,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ContainerPort {
    name: String,
    container_port: u16,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Resources {
    requests: Labels,
    limits: Labels,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct VolumeMount {
    name: String,
    mount_path: String,
    read_only: Option<bool>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Probe {
    http_get: HttpGet,
    period_seconds: Option<u32>,
    failure_threshold: Option<u32>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct HttpGet {
    path: String,
    port: serde_norway::Value,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ContainerSecurity {
    allow_privilege_escalation: Option<bool>,
    read_only_root_filesystem: Option<bool>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Volume {
    name: String,
    config_map: Option<NameRef>,
    secret: Option<SecretRef>,
    persistent_volume_claim: Option<ClaimRef>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct NameRef {
    name: String,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SecretRef {
    secret_name: String,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClaimRef {
    claim_name: String,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct ServiceSpec {
    selector: Labels,
    ports: Vec<ServicePort>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServicePort {
    name: String,
    port: u16,
    target_port: serde_norway::Value,
    #[serde(default)]
    app_protocol: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PvcSpec {
    access_modes: Vec<String>,
    resources: PvcResources,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct PvcResources {
    requests: Labels,
}

fn objects(file: &str, substitute: &[(&str, &str)]) -> Vec<Object> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/k8s").join(file);
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (from, to) in substitute {
        text = text.replace(from, to);
    }
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Object::deserialize(doc).unwrap_or_else(|e| panic!("{file}: {e}")))
        .collect()
}

/// Names Kubernetes accepts for objects (RFC 1123 labels).
fn dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn arg<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().find_map(|a| a.strip_prefix(&format!("{flag}=")))
}

#[test]
fn the_blast_job_is_an_indexed_job_whose_parts_agree() {
    let objs = objects("blast-job.yaml", &[("__RUN__", "checkout-20261122-230000"), ("__START_AT__", "1795400000")]);
    let jobs: Vec<(&Meta, &JobSpec)> = objs
        .iter()
        .filter_map(|o| match o {
            Object::Job { metadata, spec, .. } => Some((metadata, spec)),
            _ => None,
        })
        .collect();
    assert_eq!(jobs.len(), 2, "the workers' Job and the merge Job");
    assert!(objs.iter().any(|o| matches!(o, Object::PersistentVolumeClaim { .. })));
    let (meta, workers) = jobs[0];
    assert!(dns_label(&meta.name), "{}", meta.name);
    assert_eq!(workers.completion_mode, Some(CompletionMode::Indexed));
    let n = workers.completions.unwrap();
    assert_eq!(workers.parallelism, Some(n), "all workers run at once");
    let pod = &workers.template.spec;
    assert_eq!(pod.restart_policy, Some(RestartPolicy::Never));
    let blast = &pod.containers[0];
    assert_eq!(blast.args[0], "blast");
    assert_eq!(arg(&blast.args, "--worker-count"), Some(n.to_string().as_str()));
    assert_eq!(arg(&blast.args, "--worker-index"), Some("$(JOB_COMPLETION_INDEX)"));
    assert!(blast.env.iter().any(|e| e.name == "JOB_COMPLETION_INDEX"
        && e.value_from.as_ref().is_some_and(|v| v.field_ref.field_path.contains("job-completion-index"))));
    assert_eq!(arg(&blast.args, "--start-at"), Some("1795400000"));
    assert!(arg(&blast.args, "--out").is_some_and(|o| o.ends_with("/w$(JOB_COMPLETION_INDEX)")));
    // Spread: the anti-affinity selects the workers' own pods, one per node.
    let labels = &workers.template.metadata.as_ref().unwrap().labels;
    let term = &pod.affinity.as_ref().unwrap().pod_anti_affinity.required[0];
    assert_eq!(term.topology_key, "kubernetes.io/hostname");
    assert!(term.label_selector.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v)));
    // Every volume a container mounts exists.
    for c in pod.containers.iter().chain(&pod.init_containers) {
        for m in &c.volume_mounts {
            assert!(pod.volumes.iter().any(|v| v.name == m.name), "{}", m.name);
        }
    }
    // The merge joins exactly the workers' folders, after all of them.
    let (_, merge) = jobs[1];
    let m = &merge.template.spec.containers[0];
    assert_eq!(&m.args[..2], ["report", "merge"]);
    let inputs: Vec<&String> = m.args.iter().skip(2).filter(|a| !a.starts_with("--")).collect();
    assert_eq!(inputs.len(), n as usize);
    for (i, input) in inputs.iter().enumerate() {
        assert!(input.ends_with(&format!("/w{i}")), "{input}");
    }
    let wait = merge.template.spec.init_containers[0].command.join(" ");
    assert_eq!(wait.matches("summary.json").count(), n as usize, "{wait}");
}

#[test]
fn the_proxy_sidecar_manifest_is_well_formed() {
    sidecar_is_well_formed("proxy-sidecar.yaml");
}

/// The gRPC sidecar: the same shape, HTTP/2 by prior knowledge upstream, a Service that says
/// h2c, and rules the proxy's own parser takes (matching gRPC methods).
#[test]
fn the_grpc_sidecar_manifest_is_well_formed_and_its_rules_parse() {
    let objs = sidecar_is_well_formed("proxy-sidecar-grpc.yaml");
    let proxy = objs
        .iter()
        .find_map(|o| match o {
            Object::Deployment { spec, .. } => Some(&spec.template.spec.containers[1]),
            _ => None,
        })
        .unwrap();
    assert_eq!(arg(&proxy.args, "--upstream-protocol"), Some("h2c"));
    let text = objs
        .iter()
        .find_map(|o| match o {
            Object::ConfigMap { data, .. } => data.get("faults.toml"),
            _ => None,
        })
        .expect("the faults file");
    let rules = engine_proxy::faults::parse_faults_file(text).unwrap();
    assert!(rules.iter().all(|r| r.validate(2).is_ok() && r.matcher.grpc_method.is_some()), "{rules:?}");
    let service_port = objs
        .iter()
        .find_map(|o| match o {
            Object::Service { spec, .. } => spec.ports.first(),
            _ => None,
        })
        .unwrap();
    assert_eq!(service_port.app_protocol.as_deref(), Some("kubernetes.io/h2c"));
}

/// What every sidecar manifest promises; its objects.
fn sidecar_is_well_formed(file: &str) -> Vec<Object> {
    let objs = objects(file, &[]);
    let (meta, spec) = objs
        .iter()
        .find_map(|o| match o {
            Object::Deployment { metadata, spec, .. } => Some((metadata, spec)),
            _ => None,
        })
        .expect("a Deployment");
    assert!(dns_label(&meta.name));
    let pod = &spec.template.spec;
    let labels = &spec.template.metadata.as_ref().unwrap().labels;
    assert!(spec.selector.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["app", "engine-proxy"], "the application and its sidecar");
    let proxy = &pod.containers[1];
    assert_eq!(proxy.args[0], "proxy");
    // Beyond loopback, the admin API must have a token, mounted from the Secret.
    assert!(arg(&proxy.args, "--admin").is_some_and(|a| a.starts_with("0.0.0.0")));
    let token = arg(&proxy.args, "--admin-token-file").expect("a token file");
    assert!(proxy.volume_mounts.iter().any(|m| token.starts_with(&m.mount_path)));
    assert!(objs.iter().any(|o| matches!(o, Object::Secret { .. })));
    let faults = arg(&proxy.args, "--faults").unwrap();
    assert!(proxy.volume_mounts.iter().any(|m| faults.starts_with(&m.mount_path)));
    assert!(pod.termination_grace_period_seconds.unwrap() > 30, "longer than the 30 s drain");
    for m in &proxy.volume_mounts {
        assert!(pod.volumes.iter().any(|v| v.name == m.name), "{}", m.name);
    }
    let annotations = &spec.template.metadata.as_ref().unwrap().annotations;
    assert_eq!(annotations.get("prometheus.io/port").map(String::as_str), Some("9901"));
    // A dead or stuck shard turns /healthz 503 (tests/long_running.rs): liveness restarts it.
    for probe in [&proxy.readiness_probe, &proxy.liveness_probe] {
        let p = probe.as_ref().expect("readiness and liveness probes");
        assert_eq!(p.http_get.path, "/healthz");
        assert_eq!(p.http_get.port.as_str(), Some("admin"));
        assert!(proxy.ports.iter().any(|port| port.name == "admin" && port.container_port == 9901));
    }
    assert!(
        proxy.liveness_probe.as_ref().unwrap().failure_threshold.is_some_and(|n| n >= 2),
        "one slow answer is not death"
    );
    objs
}

#[test]
fn the_check_refuses_what_kubernetes_would() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/k8s/blast-job.yaml");
    let text = std::fs::read_to_string(path).unwrap().replace("__START_AT__", "1").replace("__RUN__", "r");
    let parse = |t: &str| -> Result<Vec<Object>, String> {
        serde_norway::Deserializer::from_str(t).map(|d| Object::deserialize(d).map_err(|e| e.to_string())).collect()
    };
    assert!(parse(&text).is_ok());
    for (from, to) in [
        ("completionMode: Indexed", "completionMod: Indexed"),
        ("completionMode: Indexed", "completionMode: Indexd"),
        ("restartPolicy: Never", "restartPolicy: Sometimes"),
        ("parallelism: 3", "parallelism: three"),
        ("apiVersion: batch/v1", "apiVersion: batch/v2"),
        ("containerPort: 9464", "containerPort: 99999"),
    ] {
        assert!(text.contains(from), "{from}");
        assert!(parse(&text.replacen(from, to, 1)).is_err(), "{to} was accepted");
    }
}
