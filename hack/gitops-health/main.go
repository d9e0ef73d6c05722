// Command gitops-health tells what GitOps tools make of objects read from a cluster, with the
// tools' own code: kstatus (sigs.k8s.io/cli-utils, used by Flux and kpt) and an Argo CD
// health.lua run by gopher-lua the way Argo CD runs a resource customization.
//
//	gitops-health kstatus < objects.json             one JSON line per object
//	gitops-health argocd DIR < objects.json          the same, from DIR/health.lua
//	gitops-health argocd-test DIR                    DIR/health_test.yaml, as Argo CD's tests do
//
// objects.json is a JSON list of objects (or a Kubernetes List). Argo CD runs the script without
// Lua's standard libraries unless a customization asks for them, so they are left out here too:
// a script that passes here runs in both modes.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

type verdict struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: gitops-health kstatus | argocd DIR | argocd-test DIR")
	}
	switch os.Args[1] {
	case "kstatus":
		each(func(u *unstructured.Unstructured) verdict {
			result, err := status.Compute(u)
			if err != nil {
				fail(fmt.Sprintf("kstatus: %s: %v", u.GetName(), err))
			}
			return verdict{u.GetName(), result.Status.String(), result.Message}
		})
	case "argocd":
		script := readScript(arg(2))
		each(func(u *unstructured.Unstructured) verdict {
			health, err := runHealth(script, u.Object)
			if err != nil {
				fail(fmt.Sprintf("health.lua: %s: %v", u.GetName(), err))
			}
			return verdict{u.GetName(), health.Status, health.Message}
		})
	case "argocd-test":
		os.Exit(argocdTest(arg(2)))
	default:
		fail("unknown command " + os.Args[1])
	}
}

func arg(i int) string {
	if len(os.Args) <= i {
		fail("missing argument")
	}
	return os.Args[i]
}

func fail(message string) {
	fmt.Fprintln(os.Stderr, "gitops-health: "+message)
	os.Exit(2)
}

// each decodes the objects on stdin and prints one verdict per object as a JSON line.
func each(judge func(*unstructured.Unstructured) verdict) {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err.Error())
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		var list struct {
			Items []json.RawMessage `json:"items"`
		}
		if err2 := json.Unmarshal(raw, &list); err2 != nil {
			fail("stdin is neither a JSON list of objects nor a List: " + err.Error())
		}
		items = list.Items
	}
	out := json.NewEncoder(os.Stdout)
	for _, item := range items {
		object := &unstructured.Unstructured{}
		if err := object.UnmarshalJSON(item); err != nil { // integers as int64, as kstatus wants
			fail(err.Error())
		}
		if err := out.Encode(judge(object)); err != nil {
			fail(err.Error())
		}
	}
}

func readScript(dir string) string {
	text, err := os.ReadFile(filepath.Join(dir, "health.lua"))
	if err != nil {
		fail(err.Error())
	}
	return string(text)
}

type health struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

// runHealth runs a health script on one object: the object is the global obj, the script returns
// a table with status and message; a second's budget, as Argo CD gives it.
func runHealth(script string, object map[string]interface{}) (health, error) {
	state := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer state.Close()
	for name, open := range map[string]lua.LGFunction{
		lua.LoadLibName: lua.OpenPackage, lua.BaseLibName: lua.OpenBase,
		lua.TabLibName: lua.OpenTable,
	} {
		if err := state.CallByParam(lua.P{Fn: state.NewFunction(open), Protect: true},
			lua.LString(name)); err != nil {
			return health{}, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	state.SetContext(ctx)
	state.SetGlobal("obj", toLua(state, object))
	if err := state.DoString(script); err != nil {
		return health{}, err
	}
	table, ok := state.Get(-1).(*lua.LTable)
	if !ok {
		return health{}, fmt.Errorf("the script returned %s, not a table", state.Get(-1).Type())
	}
	result := health{Status: lua.LVAsString(table.RawGetString("status")),
		Message: lua.LVAsString(table.RawGetString("message"))}
	switch result.Status {
	case "Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown":
		return result, nil
	}
	return health{}, fmt.Errorf("the script returned an invalid health status %q", result.Status)
}

func toLua(state *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []interface{}:
		table := state.CreateTable(len(v), 0)
		for _, item := range v {
			table.Append(toLua(state, item))
		}
		return table
	case map[string]interface{}:
		table := state.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetString(key, toLua(state, item))
		}
		return table
	}
	return lua.LNil
}

// argocdTest runs DIR/health_test.yaml, Argo CD's layout for a customization's tests: each test
// names an input object (inputPath, relative to DIR) and the health the script must give it.
func argocdTest(dir string) int {
	raw, err := os.ReadFile(filepath.Join(dir, "health_test.yaml"))
	if err != nil {
		fail(err.Error())
	}
	var suite struct {
		Tests []struct {
			HealthStatus health `json:"healthStatus"`
			InputPath    string `json:"inputPath"`
		} `json:"tests"`
	}
	if err := yaml.UnmarshalStrict(raw, &suite); err != nil {
		fail("health_test.yaml: " + err.Error())
	}
	if len(suite.Tests) == 0 {
		fail("health_test.yaml has no tests")
	}
	script, failed := readScript(dir), 0
	for _, test := range suite.Tests {
		input, err := os.ReadFile(filepath.Join(dir, test.InputPath))
		if err != nil {
			fail(err.Error())
		}
		object := map[string]interface{}{}
		if err := yaml.Unmarshal(input, &object); err != nil {
			fail(test.InputPath + ": " + err.Error())
		}
		got, err := runHealth(script, object)
		if err != nil {
			fmt.Printf("FAIL %s: %v\n", test.InputPath, err)
			failed++
			continue
		}
		if got != test.HealthStatus {
			fmt.Printf("FAIL %s: got %+v, want %+v\n", test.InputPath, got, test.HealthStatus)
			failed++
			continue
		}
		fmt.Printf("ok   %s: %s\n", test.InputPath, got.Status)
	}
	if failed > 0 {
		return 1
	}
	return 0
}
