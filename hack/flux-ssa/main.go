// Command flux-ssa applies Kubernetes manifests with Flux's own apply engine,
// github.com/fluxcd/pkg/ssa, configured as kustomize-controller configures it,
// so the tests can show what Flux does to objects the modelpin webhook mutates.
//
// It stands in for kustomize-controller's apply step only: no source fetch, no
// kustomize build, no inventory, pruning or health checks.
//
// Usage:
//
//	flux-ssa apply --kubeconfig FILE [--name N] [--namespace NS] PATH
//	flux-ssa diff  --kubeconfig FILE [--name N] [--namespace NS] PATH
//
// PATH is a YAML/JSON file or a folder of them (read in name order, not
// recursively). apply prints the ChangeSet as JSON; diff prints each object's
// dry-run action with the JSON patch from the live to the merged object, and
// exits 1 when an object would be created or configured, as `flux diff` does.
// Any error exits 2.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/polling"
	"github.com/fluxcd/pkg/ssa"
	ssajsondiff "github.com/fluxcd/pkg/ssa/jsondiff"
	"github.com/fluxcd/pkg/ssa/normalize"
	ssautils "github.com/fluxcd/pkg/ssa/utils"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// kustomize-controller's identity: its field manager (--controller-name's
// default) and the API group its owner labels and selectors are named after.
const (
	fieldManager = "kustomize-controller"
	group        = "kustomize.toolkit.fluxcd.io"
	// kustomize-controller's --concurrent-ssa default.
	concurrentSSA = 4
)

type entry struct {
	Subject   string          `json:"subject"`
	Action    string          `json:"action"`
	Group     string          `json:"group"`
	Version   string          `json:"version"`
	Kind      string          `json:"kind"`
	Namespace string          `json:"namespace"`
	Name      string          `json:"name"`
	Diff      json.RawMessage `json:"diff,omitempty"`
}

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "apply" && os.Args[1] != "diff") {
		fmt.Fprintln(os.Stderr, "usage: flux-ssa apply|diff --kubeconfig FILE [--name N] [--namespace NS] PATH")
		os.Exit(2)
	}
	mode := os.Args[1]
	flags := flag.NewFlagSet(mode, flag.ExitOnError)
	kubeconfig := flags.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file")
	name := flags.String("name", "modelpin", "the Kustomization's name, for the owner labels")
	namespace := flags.String("namespace", "flux-system", "the Kustomization's namespace, for the owner labels")
	timeout := flags.Duration("timeout", 2*time.Minute, "give up after this long")
	_ = flags.Parse(os.Args[2:])
	if flags.NArg() != 1 || *kubeconfig == "" {
		fmt.Fprintf(os.Stderr, "usage: flux-ssa %s --kubeconfig FILE [--name N] [--namespace NS] PATH\n", mode)
		os.Exit(2)
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	code, err := run(ctx, mode, *kubeconfig, *name, *namespace, flags.Arg(0), os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "flux-ssa %s: %v\n", mode, err)
	}
	os.Exit(code)
}

func run(ctx context.Context, mode, kubeconfig, name, namespace, path string, out io.Writer) (int, error) {
	objects, err := readObjects(path)
	if err != nil {
		return 2, err
	}
	manager, err := newManager(kubeconfig)
	if err != nil {
		return 2, err
	}
	// As kustomize-controller's reconcile does between the build and the apply.
	manager.SetOwnerLabels(objects, name, namespace)
	manager.SetConcurrency(concurrentSSA)
	if err := normalize.UnstructuredList(objects); err != nil {
		return 2, err
	}

	if mode == "apply" {
		changeSet, applyErr := manager.ApplyAllStaged(ctx, objects, applyOptions())
		// A partial apply still reports what it did, as the controller logs it.
		if changeSet != nil {
			if err := writeJSON(out, changeSetEntries(changeSet)); err != nil {
				return 2, err
			}
		}
		if applyErr != nil {
			return 2, applyErr
		}
		return 0, nil
	}

	entries, drifted, err := diff(ctx, manager, objects)
	if err != nil {
		return 2, err
	}
	if err := writeJSON(out, entries); err != nil {
		return 2, err
	}
	if drifted {
		return 1, nil
	}
	return 0, nil
}

func newManager(kubeconfig string) (*ssa.ResourceManager, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	// Dynamic, so kinds whose CRDs the first stage creates are found in the next.
	mapper, err := apiutil.NewDynamicRESTMapper(cfg, httpClient)
	if err != nil {
		return nil, err
	}
	kubeClient, err := client.New(cfg, client.Options{HTTPClient: httpClient, Mapper: mapper})
	if err != nil {
		return nil, err
	}
	poller := polling.NewStatusPoller(kubeClient, mapper, polling.Options{})
	return ssa.NewResourceManager(kubeClient, poller, ssa.Owner{Field: fieldManager, Group: group}), nil
}

// applyOptions are kustomize-controller's, for a Kustomization without
// spec.force and without --override-manager (DisallowedFieldManagers) entries.
func applyOptions() ssa.ApplyOptions {
	opts := ssa.DefaultApplyOptions()
	opts.Force = false
	opts.ExclusionSelector = map[string]string{
		group + "/reconcile": "disabled",
		group + "/ssa":       "Ignore",
	}
	opts.IfNotPresentSelector = map[string]string{group + "/ssa": "IfNotPresent"}
	opts.ForceSelector = map[string]string{group + "/force": "enabled"}
	opts.Cleanup = ssa.ApplyCleanupOptions{
		Annotations: []string{
			corev1.LastAppliedConfigAnnotation,
			group + "/checksum",
			"fluxcd.io/sync-checksum",
		},
		Labels: []string{"fluxcd.io/sync-gc-mark"},
		FieldManagers: []ssa.FieldManager{
			{Name: "kubectl", OperationType: metav1.ManagedFieldsOperationApply},
			{Name: "kubectl", OperationType: metav1.ManagedFieldsOperationUpdate},
			{Name: "before-first-apply", OperationType: metav1.ManagedFieldsOperationUpdate},
			{Name: fieldManager, OperationType: metav1.ManagedFieldsOperationUpdate},
		},
		Exclusions: map[string]string{group + "/ssa": "Merge"},
	}
	return opts
}

// diffOptions are what `flux diff kustomization` passes for the same selectors.
func diffOptions() ssa.DiffOptions {
	return ssa.DiffOptions{
		Exclusions: map[string]string{
			group + "/reconcile": "disabled",
			group + "/ssa":       "Ignore",
		},
		IfNotPresentSelector: map[string]string{group + "/ssa": "IfNotPresent"},
		ForceSelector:        map[string]string{group + "/force": "enabled"},
	}
}

func diff(ctx context.Context, manager *ssa.ResourceManager, objects []*unstructured.Unstructured) ([]entry, bool, error) {
	entries := make([]entry, 0, len(objects))
	drifted := false
	for _, obj := range objects {
		change, live, merged, err := manager.Diff(ctx, obj, diffOptions())
		if err != nil {
			return entries, drifted, fmt.Errorf("%s: %w", ssautils.FmtUnstructured(obj), err)
		}
		e := toEntry(*change)
		switch change.Action {
		case ssa.CreatedAction:
			drifted = true
		case ssa.ConfiguredAction:
			drifted = true
			if live != nil && merged != nil {
				patch, err := ssajsondiff.DiffUnstructured(live, merged)
				if err != nil {
					return entries, drifted, err
				}
				raw, err := json.Marshal(patch)
				if err != nil {
					return entries, drifted, err
				}
				e.Diff = raw
			}
		}
		entries = append(entries, e)
	}
	return entries, drifted, nil
}

func changeSetEntries(cs *ssa.ChangeSet) []entry {
	entries := make([]entry, 0, len(cs.Entries))
	for _, e := range cs.Entries {
		entries = append(entries, toEntry(e))
	}
	return entries
}

func toEntry(e ssa.ChangeSetEntry) entry {
	return entry{
		Subject:   e.Subject,
		Action:    string(e.Action),
		Group:     e.ObjMetadata.GroupKind.Group,
		Version:   e.GroupVersion,
		Kind:      e.ObjMetadata.GroupKind.Kind,
		Namespace: e.ObjMetadata.Namespace,
		Name:      e.ObjMetadata.Name,
	}
}

func readObjects(path string) ([]*unstructured.Unstructured, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	files := []string{path}
	if info.IsDir() {
		files = nil
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			ext := strings.ToLower(filepath.Ext(e.Name()))
			if !e.IsDir() && (ext == ".yaml" || ext == ".yml" || ext == ".json") {
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
		sort.Strings(files)
	}
	var objects []*unstructured.Unstructured
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		objs, err := ssautils.ReadObjects(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		objects = append(objects, objs...)
	}
	if len(objects) == 0 {
		return nil, errors.New("no Kubernetes objects found at " + path)
	}
	return objects, nil
}

func writeJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
