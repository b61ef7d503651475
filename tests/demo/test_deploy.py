"""deploy/: the Kubernetes sidecar example and the compose file say what the README promises."""

from __future__ import annotations

import re

import yaml
from demo_helpers import REPO

from keys.config_file import read_config_mapping
from proxy.settings import Settings, load_settings

DEPLOY = REPO / "deploy"


def k8s_docs():
    with (DEPLOY / "kubernetes/phi-proxy.yaml").open(encoding="utf-8") as handle:
        return {doc["kind"]: doc for doc in yaml.safe_load_all(handle)}


def pod_spec():
    return k8s_docs()["Deployment"]["spec"]["template"]["spec"]


def container(name):
    (found,) = [c for c in pod_spec()["containers"] if c["name"] == name]
    return found


def compose():
    with (DEPLOY / "docker-compose.yaml").open(encoding="utf-8") as handle:
        docs = list(yaml.safe_load_all(handle))
    assert len(docs) == 1
    return docs[0]


class TestKubernetesExample:
    def test_portal_listens_on_localhost_and_exposes_nothing(self):
        """The portal container binds 127.0.0.1 and declares no ports."""
        portal = container("portal")
        assert "ports" not in portal
        env = {e["name"]: e["value"] for e in portal["env"]}
        assert env["BIND_ADDRESS"] == "127.0.0.1"

    def test_service_exposes_only_the_proxy(self):
        """The Service forwards one port, to phi-proxy's client listener."""
        ports = k8s_docs()["Service"]["spec"]["ports"]
        assert [p["targetPort"] for p in ports] == ["http"]
        named = {p["name"]: p["containerPort"] for p in container("phi-proxy")["ports"]}
        assert named["http"] == 8080

    def test_config_comes_from_a_configmap_and_is_valid(self, tmp_path):
        """The ConfigMap's config.yaml validates as a whole phi-proxy config."""
        text = k8s_docs()["ConfigMap"]["data"]["config.yaml"]
        path = tmp_path / "config.yaml"
        path.write_text(text, encoding="utf-8")
        settings = load_settings(path)
        assert str(settings.upstream.url).startswith("http://127.0.0.1:")
        assert settings.keys.kek.provider == "env"
        mounts = {m["name"]: m for m in container("phi-proxy")["volumeMounts"]}
        volumes = {v["name"]: v for v in pod_spec()["volumes"]}
        assert volumes["config"]["configMap"]["name"] == "phi-proxy-config"
        assert mounts["config"]["mountPath"] == "/etc/phi-proxy"
        assert container("phi-proxy")["args"] == ["serve", "-c", "/etc/phi-proxy/config.yaml"]

    def test_keystore_and_kek_come_from_secrets(self, tmp_path):
        """Keystore: a read-only Secret volume at the configured path; KEK: a Secret env var."""
        path = tmp_path / "config.yaml"
        path.write_text(k8s_docs()["ConfigMap"]["data"]["config.yaml"], encoding="utf-8")
        settings = load_settings(path)
        mounts = {m["name"]: m for m in container("phi-proxy")["volumeMounts"]}
        volumes = {v["name"]: v for v in pod_spec()["volumes"]}
        assert "secretName" in volumes["keystore"]["secret"]
        assert mounts["keystore"]["readOnly"] is True
        assert str(settings.keys.keystore.parent) == mounts["keystore"]["mountPath"]
        env = {e["name"]: e for e in container("phi-proxy")["env"]}
        assert "secretKeyRef" in env[settings.keys.kek.env_var]["valueFrom"]
        assert all("value" not in e for e in env.values()), "no secret inline in the manifest"

    def test_usage_counts_go_to_the_persistent_state_volume(self, tmp_path):
        """keys.usage_file is on the writable state claim, not beside the read-only Secret."""
        path = tmp_path / "config.yaml"
        path.write_text(k8s_docs()["ConfigMap"]["data"]["config.yaml"], encoding="utf-8")
        usage_file = load_settings(path).keys.usage_file
        mounts = {m["name"]: m for m in container("phi-proxy")["volumeMounts"]}
        volumes = {v["name"]: v for v in pod_spec()["volumes"]}
        assert usage_file is not None
        assert str(usage_file.parent) == mounts["state"]["mountPath"]
        assert mounts["state"].get("readOnly", False) is False
        assert "persistentVolumeClaim" in volumes["state"]

    def test_probes_use_the_admin_endpoints(self):
        """Readiness is /readyz and liveness /healthz, on the admin port."""
        proxy = container("phi-proxy")
        assert proxy["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
        assert proxy["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}

    def test_non_root_read_only_and_no_capabilities(self):
        """Pod runs as non-root; every container: own non-root UID, read-only fs, no caps."""
        spec = pod_spec()
        assert spec["securityContext"]["runAsNonRoot"] is True
        for item in spec["containers"]:
            context = item["securityContext"]
            assert context["runAsUser"] != 0, item["name"]
            assert context["runAsGroup"] != 0, item["name"]
            assert context["readOnlyRootFilesystem"] is True, item["name"]
            assert context["allowPrivilegeEscalation"] is False, item["name"]
            assert context["capabilities"]["drop"] == ["ALL"], item["name"]

    def test_portal_never_runs_as_the_proxy_user(self):
        """Sharing the network namespace, a same-UID portal could join the proxy's port.

        The UIDs are per container, and the pod sets none a container could inherit.
        """
        assert "runAsUser" not in pod_spec()["securityContext"]
        assert "runAsGroup" not in pod_spec()["securityContext"]
        proxy, portal = (
            container("phi-proxy")["securityContext"],
            container("portal")["securityContext"],
        )
        assert proxy["runAsUser"] == 10001, "the image's phi user"
        assert portal["runAsUser"] != proxy["runAsUser"]
        assert portal["runAsGroup"] != proxy["runAsGroup"]


class TestKubernetesStartsOnTheFirstTry:
    def test_state_volume_keeps_file_modes_across_mounts(self):
        """The kubelet, by OnRootMismatch, does not make grants.sqlite3 0660 again at a remount.

        With the default policy it walks the volume at every mount (g+rw on every file), and
        the proxy refuses a group-writable grant database: a crash loop after the first
        restart. tests/demo/test_deploy_pod.py replays both.
        """
        context = pod_spec()["securityContext"]
        assert context["fsGroupChangePolicy"] == "OnRootMismatch"
        assert isinstance(context["fsGroup"], int)

    def test_fs_group_is_a_group_of_its_own(self):
        """Every container joins the fsGroup: it is no container's user or primary group."""
        fs_group = pod_spec()["securityContext"]["fsGroup"]
        for item in pod_spec()["containers"]:
            context = item["securityContext"]
            assert fs_group not in (context["runAsUser"], context["runAsGroup"]), item["name"]

    def test_only_the_proxy_mounts_its_state_and_keys(self):
        """The volumes the fsGroup owns reach phi-proxy only; no shared process namespace."""
        assert not pod_spec().get("shareProcessNamespace", False)
        portal = container("portal")
        assert "volumeMounts" not in portal
        assert not pod_spec().get("initContainers")

    def test_every_writable_path_of_the_config_is_on_a_writable_mount(self, tmp_path):
        """Grant DB (with -wal/-shm), audit trail and usage counts: on the state volume.

        The root filesystem is read-only, so a path anywhere else would stop the start; /tmp
        is an emptyDir for SQLite's and Python's temporary files.
        """
        path = tmp_path / "config.yaml"
        path.write_text(k8s_docs()["ConfigMap"]["data"]["config.yaml"], encoding="utf-8")
        settings = load_settings(path)
        mounts = {m["mountPath"]: m for m in container("phi-proxy")["volumeMounts"]}
        writable = {p for p, m in mounts.items() if not m.get("readOnly", False)}
        assert container("phi-proxy")["securityContext"]["readOnlyRootFilesystem"] is True
        assert "/tmp" in writable  # noqa: S108 - the container's path, not ours
        for written in (
            settings.grants.sqlite_path,
            settings.audit.path,
            settings.keys.usage_file,
        ):
            assert written is not None
            assert str(written.parent) in writable, written
        assert str(settings.keys.keystore.parent) in mounts

    def test_ports_of_the_config_are_the_containers_ports(self, tmp_path):
        """listen.port is the `http` port the Service targets, admin.port the probes' port."""
        path = tmp_path / "config.yaml"
        path.write_text(k8s_docs()["ConfigMap"]["data"]["config.yaml"], encoding="utf-8")
        settings = load_settings(path)
        named = {p["name"]: p["containerPort"] for p in container("phi-proxy")["ports"]}
        assert named["http"] == settings.listen.port
        assert named["admin"] == settings.admin.port
        assert settings.admin.host == "0.0.0.0"  # noqa: S104 - the kubelet probes the pod IP

    def test_every_secret_the_pod_needs_has_its_create_command(self):
        """README and the manifest's header create each Secret the pod names, by that name."""
        names = {v["secret"]["secretName"] for v in pod_spec()["volumes"] if "secret" in v}
        for item in container("phi-proxy")["env"]:
            names.add(item["valueFrom"]["secretKeyRef"]["name"])
        header = (DEPLOY / "kubernetes/phi-proxy.yaml").read_text(encoding="utf-8")
        readme = (REPO / "README.md").read_text(encoding="utf-8")
        for name in names:
            assert f"kubectl create secret generic {name} " in header, name
            assert f"kubectl create secret generic {name} " in readme, name

    def test_readme_builds_the_image_the_manifest_runs(self):
        """`docker build -t IMAGE` in the README names the phi-proxy container's image."""
        image = container("phi-proxy")["image"]
        readme = (REPO / "README.md").read_text(encoding="utf-8")
        assert f"docker build -t {image} ." in readme
        assert f"docker push {image}" in readme


class TestComposeExample:
    def test_portal_shares_the_proxy_namespace_and_publishes_nothing(self):
        """The portal lives in phi-proxy's network namespace on 127.0.0.1 with no ports."""
        services = compose()["services"]
        portal = services["portal"]
        assert portal["network_mode"] == "service:phi-proxy"
        assert "ports" not in portal
        assert portal["environment"]["BIND_ADDRESS"] == "127.0.0.1"
        assert services["phi-proxy"]["ports"] == ["8080:8080"]

    def test_portal_never_runs_as_the_proxy_user(self):
        """The portal shares phi-proxy's network namespace, so it must not share its UID."""
        services = compose()["services"]
        proxy_uid, proxy_gid = services["phi-proxy"]["user"].split(":")
        portal_uid, portal_gid = services["portal"]["user"].split(":")
        assert portal_uid not in (proxy_uid, "0", "root")
        assert portal_gid not in (proxy_gid, "0", "root")

    def test_proxy_is_hardened_and_secrets_are_mounted(self):
        """Non-root, read-only, no caps; keystore as a compose secret, KEK from the environment."""
        proxy = compose()["services"]["phi-proxy"]
        assert not proxy["user"].startswith(("0:", "root"))
        assert proxy["read_only"] is True
        assert proxy["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in proxy["security_opt"]
        assert proxy["secrets"] == [{"source": "keystore", "target": "keystore.json"}]
        assert proxy["environment"]["PHI_PROXY_KEK"].startswith("${PHI_PROXY_KEK:?")

    def test_compose_config_is_valid_and_matches_the_mounts(self):
        """deploy/config.yaml validates and names the paths compose mounts."""
        settings = load_settings(DEPLOY / "config.yaml")
        assert isinstance(settings, Settings)
        assert str(settings.keys.keystore) == "/run/secrets/keystore.json"
        volumes = compose()["services"]["phi-proxy"]["volumes"]
        assert "./config.yaml:/etc/phi-proxy/config.yaml:ro" in volumes
        assert settings.grants.store.startswith("/var/lib/phi-proxy/")
        assert "phi-proxy-state:/var/lib/phi-proxy" in volumes
        assert str(settings.keys.usage_file).startswith("/var/lib/phi-proxy/"), "secrets are ro"
        assert read_config_mapping(DEPLOY / "config.yaml")["admin"]["host"] == "127.0.0.1"

    def test_the_image_healthcheck_asks_the_admin_port_of_deploy_config(self):
        """The compose service relies on the image's HEALTHCHECK, which reads the mounted config.

        `phi-proxy healthcheck` reads $PHI_PROXY_CONFIG (the image's ENV), the very path compose
        mounts deploy/config.yaml at, and probes its admin address.
        """
        from proxy.healthcheck import admin_url

        dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
        assert 'CMD ["phi-proxy", "healthcheck"]' in dockerfile
        env = re.search(r"PHI_PROXY_CONFIG=(\S+)", dockerfile)
        assert env is not None
        volumes = compose()["services"]["phi-proxy"]["volumes"]
        assert f"./config.yaml:{env.group(1)}:ro" in volumes
        admin = load_settings(REPO / "deploy" / "config.yaml").admin
        assert admin_url(admin, "/healthz") == f"http://127.0.0.1:{admin.port}/healthz"
        assert "healthcheck" not in compose()["services"]["phi-proxy"]
