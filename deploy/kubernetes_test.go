package deploy_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/kanal-cdc/kanal/config"
	"github.com/kanal-cdc/kanal/handlers"
)

// manifests decodes every document of deploy/kubernetes/*.yaml strictly into
// its k8s.io/api type: an unknown field or kind fails.
type manifests struct {
	configMaps   map[string]*corev1.ConfigMap
	deployments  map[string]*appsv1.Deployment
	statefulSets map[string]*appsv1.StatefulSet
	services     map[string]*corev1.Service
}

func loadManifests(t *testing.T) *manifests {
	t.Helper()
	m := &manifests{configMaps: map[string]*corev1.ConfigMap{}, deployments: map[string]*appsv1.Deployment{},
		statefulSets: map[string]*appsv1.StatefulSet{}, services: map[string]*corev1.Service{}}
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
			if strings.TrimSpace(regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(doc, "")) == "" {
				continue
			}
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			var obj interface{ GetName() string }
			switch tm.APIVersion + " " + tm.Kind {
			case "v1 ConfigMap":
				o := &corev1.ConfigMap{}
				obj, m.configMaps[nameOf(t, f, doc)] = o, o
			case "apps/v1 Deployment":
				o := &appsv1.Deployment{}
				obj, m.deployments[nameOf(t, f, doc)] = o, o
			case "apps/v1 StatefulSet":
				o := &appsv1.StatefulSet{}
				obj, m.statefulSets[nameOf(t, f, doc)] = o, o
			case "v1 Service":
				o := &corev1.Service{}
				obj, m.services[nameOf(t, f, doc)] = o, o
			default:
				t.Fatalf("%s document %d: unexpected %s %s", f, i, tm.APIVersion, tm.Kind)
			}
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Fatalf("%s document %d (%s): %v", f, i, tm.Kind, err)
			}
		}
	}
	return m
}

func nameOf(t *testing.T, file, doc string) string {
	var o metav1.PartialObjectMetadata
	if err := yaml.Unmarshal([]byte(doc), &o); err != nil || o.Name == "" {
		t.Fatalf("%s: a document without a name (%v)", file, err)
	}
	return o.Name
}

// workload is what the checks need of a Deployment or StatefulSet.
type workload struct {
	name     string
	replicas int32
	pod      corev1.PodTemplateSpec
}

// TestKubernetes checks deploy/kubernetes: the producer and consumer
// workloads run the image as an unprivileged user with kanal's own
// configuration loader accepting the ConfigMap; every file the configuration
// names (passwords, CA) is mounted from a Secret into the workload that needs
// it; the consumers' probes, metrics port and scrape annotations match
// consumers.metrics_addr; the requests come from the bench's measured RSS.
func TestKubernetes(t *testing.T) {
	m := loadManifests(t)
	cm := m.configMaps["kanal-config"]
	if cm == nil || cm.Data["kanal.yaml"] == "" {
		t.Fatal("no ConfigMap kanal-config with kanal.yaml")
	}
	prod, ok := m.deployments["kanal-produce"]
	if !ok {
		t.Fatal("no Deployment kanal-produce")
	}
	cons, ok := m.statefulSets["kanal-consume"]
	if !ok {
		t.Fatal("no StatefulSet kanal-consume")
	}
	if svc := m.services[cons.Spec.ServiceName]; svc == nil || svc.Spec.ClusterIP != "None" {
		t.Errorf("the StatefulSet's service %q is not a headless Service here", cons.Spec.ServiceName)
	}
	if !reflect.DeepEqual(prod.Spec.Selector.MatchLabels, prod.Spec.Template.Labels) ||
		!reflect.DeepEqual(cons.Spec.Selector.MatchLabels, cons.Spec.Template.Labels) {
		t.Error("a workload's selector does not match its pods' labels")
	}

	// Active and standby, rolled one pod at a time.
	if prod.Spec.Replicas == nil || *prod.Spec.Replicas != 2 || prod.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType ||
		prod.Spec.Strategy.RollingUpdate == nil || prod.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue() != 0 {
		t.Errorf("kanal-produce: replicas %v strategy %+v, want 2 (active + standby), rolled with none unavailable",
			prod.Spec.Replicas, prod.Spec.Strategy)
	}

	rss := benchRSS(t)
	for _, w := range []workload{
		{"kanal-produce", *prod.Spec.Replicas, prod.Spec.Template},
		{"kanal-consume", *cons.Spec.Replicas, cons.Spec.Template},
	} {
		pod := w.pod.Spec
		if len(pod.Containers) != 1 {
			t.Fatalf("%s: %d containers", w.name, len(pod.Containers))
		}
		c := pod.Containers[0]
		if !pinnedImage.MatchString(c.Image) && !regexp.MustCompile(`^[a-z0-9./_-]+:[a-z0-9._-]+$`).MatchString(c.Image) || strings.HasSuffix(c.Image, ":latest") {
			t.Errorf("%s: image %q has no version tag", w.name, c.Image)
		}
		sc := pod.SecurityContext
		if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != 10001 {
			t.Errorf("%s: the pod does not run as the image's user 10001", w.name)
		}
		if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem ||
			c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation {
			t.Errorf("%s: the container may write its root filesystem or escalate", w.name)
		}
		cmd := strings.TrimPrefix(w.name, "kanal-")
		if len(c.Args) != 3 || c.Args[0] != cmd || c.Args[1] != "--config" {
			t.Fatalf("%s: args %v, want [%s --config <file>]", w.name, c.Args, cmd)
		}
		files := mountedFiles(t, w.name, pod, c, m)
		if files[c.Args[2]] != "configmap kanal-config key kanal.yaml" {
			t.Fatalf("%s: --config %s is not kanal.yaml of the ConfigMap (mounted: %v)", w.name, c.Args[2], files)
		}

		// The ConfigMap loads with kanal's loader, given the container's
		// environment (every ${VAR} must be one of its variables).
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = "env-" + e.Name
			if e.Name == "POD_IP" {
				env[e.Name] = "10.1.2.3"
			}
		}
		f, err := config.Parse([]byte(cm.Data["kanal.yaml"]), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		if err != nil {
			t.Fatalf("%s: the ConfigMap's kanal.yaml: %v", w.name, err)
		}
		// Every file the sections this command uses name is mounted.
		var need []string
		if cmd == "produce" {
			need = append(need, f.Source.PasswordFile, f.Source.TLS.CA, f.Source.TLS.Cert, f.Source.TLS.Key)
		} else {
			need = append(need, handlerFiles(t, &f.Consumers)...)
		}
		if s := f.Kafka.SASL; s != nil {
			need = append(need, s.PasswordFile)
		}
		need = append(need, f.Kafka.TLS.CA, f.Kafka.TLS.Cert, f.Kafka.TLS.Key)
		for _, file := range need {
			if file != "" && !strings.HasPrefix(files[file], "secret ") {
				t.Errorf("%s: the configuration reads %s, which no Secret mounts there (mounted: %v)", w.name, file, files)
			}
		}
		if !f.Source.TLS.Enabled || !f.Kafka.TLS.Enabled || f.Kafka.SASL == nil {
			t.Errorf("%s: the example must use TLS to the source and Kafka, and SASL", w.name)
		}

		req, lim := c.Resources.Requests[corev1.ResourceMemory], c.Resources.Limits[corev1.ResourceMemory]
		if req.Cmp(rss.median) < 0 || lim.Cmp(rss.max) < 0 || lim.Cmp(req) < 0 {
			t.Errorf("%s: memory request %s / limit %s, but the bench measured %s (median) / %s (max)", w.name, req.String(), lim.String(),
				rss.median.String(), rss.max.String())
		}
		if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok {
			t.Errorf("%s: no CPU request", w.name)
		}

		// The admin listener: on the pod's IP, probed, scraped.
		addr := f.Consumers.MetricsAddr
		if cmd == "produce" {
			addr = f.Admin.Listen
			if !f.HA.Enabled || f.HA.Instance != env["POD_NAME"] {
				t.Errorf("%s: ha %+v, want enabled with the pod's name", w.name, f.HA)
			}
		} else if f.Consumers.InstanceID != env["POD_NAME"] {
			t.Errorf("%s: instance_id %q, want the StatefulSet's pod name ${POD_NAME}", w.name, f.Consumers.InstanceID)
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host != env["POD_IP"] {
			t.Errorf("%s: admin address %q does not listen on the pod's IP (probes come from the kubelet)", w.name, addr)
		}
		if len(c.Ports) != 1 || fmt.Sprint(c.Ports[0].ContainerPort) != port || c.Ports[0].Name != "admin" {
			t.Errorf("%s: ports %+v, admin address port %s", w.name, c.Ports, port)
		}
		for probe, want := range map[*corev1.Probe]string{c.LivenessProbe: "/healthz", c.ReadinessProbe: "/readyz"} {
			if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != want || probe.HTTPGet.Port.String() != "admin" {
				t.Errorf("%s: no probe on %s of port admin: %+v", w.name, want, probe)
			}
		}
		a := w.pod.Annotations
		if a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != port || a["prometheus.io/path"] != "/metrics" {
			t.Errorf("%s: scrape annotations %v, want port %s /metrics", w.name, a, port)
		}
		if w.replicas < 2 {
			t.Errorf("%s: %d replica(s): a member should be able to fail", w.name, w.replicas)
		}
	}
}

// mountedFiles maps each file path the container sees to where it comes from:
// "configmap <name> key <key>" or "secret <name> key <key>".
func mountedFiles(t *testing.T, name string, pod corev1.PodSpec, c corev1.Container, m *manifests) map[string]string {
	t.Helper()
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v
	}
	files := map[string]string{}
	for _, vm := range c.VolumeMounts {
		v, ok := vols[vm.Name]
		if !ok {
			t.Fatalf("%s: mount %s has no volume", name, vm.Name)
		}
		var items []corev1.KeyToPath
		var from string
		switch {
		case v.ConfigMap != nil:
			items, from = v.ConfigMap.Items, "configmap "+v.ConfigMap.Name
			if len(items) == 0 {
				for k := range m.configMaps[v.ConfigMap.Name].Data {
					items = append(items, corev1.KeyToPath{Key: k, Path: k})
				}
			}
		case v.Secret != nil:
			items, from = v.Secret.Items, "secret "+v.Secret.SecretName
			if len(items) == 0 {
				t.Errorf("%s: Secret %s is mounted whole; list the keys the process reads", name, v.Secret.SecretName)
			}
		default:
			continue
		}
		for _, it := range items {
			files[path.Join(vm.MountPath, it.Path)] = from + " key " + it.Key
		}
	}
	return files
}

// handlerFiles lists the password and TLS files the handlers' options name.
func handlerFiles(t *testing.T, c *handlers.Config) []string {
	t.Helper()
	var out []string
	for _, h := range c.Handlers {
		var walk func(v any)
		walk = func(v any) {
			switch x := v.(type) {
			case map[string]any:
				for k, val := range x {
					if s, ok := val.(string); ok && (k == "password_file" || k == "ca" || k == "cert" || k == "key") {
						out = append(out, s)
					}
					walk(val)
				}
			case []any:
				for _, e := range x {
					walk(e)
				}
			}
		}
		var opts any
		if err := h.Options.Decode(&opts); err != nil {
			t.Fatal(err)
		}
		walk(opts)
	}
	return out
}

type rssFigures struct{ median, max resource.Quantity }

// benchRSS reads the producer's peak RSS (stage 6) from the committed
// baseline of `make bench`.
func benchRSS(t *testing.T) rssFigures {
	t.Helper()
	// Only full runs measure every row (a targeted baseline may lack row 6).
	files, _ := filepath.Glob("../bench/results/baseline-*-full.json")
	if len(files) == 0 {
		t.Fatal("no full bench baseline in bench/results")
	}
	slices.Sort(files)
	data, err := os.ReadFile(files[len(files)-1])
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Rows []struct {
			ID    string `json:"id"`
			Unit  string `json:"unit"`
			Value struct {
				Median float64 `json:"median"`
				Max    float64 `json:"max"`
			} `json:"value"`
		} `json:"rows"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Rows {
		if r.ID == "6" && r.Unit == "MiB" {
			return rssFigures{
				median: resource.MustParse(fmt.Sprintf("%dMi", int(r.Value.Median+0.999))),
				max:    resource.MustParse(fmt.Sprintf("%dMi", int(r.Value.Max+0.999))),
			}
		}
	}
	t.Fatalf("%s has no peak RSS (stage 6)", files[len(files)-1])
	return rssFigures{}
}
