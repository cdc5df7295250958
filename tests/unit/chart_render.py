"""Just enough of Helm to render the chart's NetworkPolicies in a unit test, and a model of what
Kubernetes then lets through.

`helm` is not installed where the tests run, so `render` implements the subset of Go templates
that templates/networkpolicy.yaml uses: `if` / `else` / `end` (conditions: a path, `not`, `and`,
`or`), `$x := <path>`, `.Values.…` and `$x.…` paths, `toYaml <path> | nindent N`, `include` of the
chart's naming helpers, and the `{{-` / `-}}` whitespace trimming. Anything else raises, so a
template that outgrows the subset fails its test instead of passing half-rendered.

`allowed` answers "may this endpoint open that port on that one?" under the NetworkPolicy rules
(a pod selected by some policy of a direction is isolated in it; traffic passes when the
source's egress and the destination's ingress both allow it)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.DOTALL)
RELEASE = "shop"
NAMESPACE = "market"


class Unsupported(Exception):
    """A template construct this renderer does not implement."""


def _helpers(chart: dict[str, Any]) -> dict[str, str]:
    """The chart's naming helpers for release RELEASE (no overrides set), as helm renders them."""
    name = chart["name"]
    fullname = RELEASE if name in RELEASE else f"{RELEASE}-{name}"
    selector = f"app.kubernetes.io/name: {name}\napp.kubernetes.io/instance: {RELEASE}"
    return {
        "sharehub.name": name,
        "sharehub.fullname": fullname,
        "sharehub.selectorLabels": selector,
        "sharehub.labels": (f"helm.sh/chart: {name}-{chart['version']}\n{selector}\n"
                            f"app.kubernetes.io/version: {chart['appVersion']!r}\napp.kubernetes.io/managed-by: Helm"),
        "sharehub.rayClusterName": f"{fullname}-ray",
    }


def _truthy(value: Any) -> bool:
    return value not in (None, False, 0, "", [], {})


@dataclass
class _Scope:
    values: dict[str, Any]
    helpers: dict[str, str]
    variables: dict[str, Any] = field(default_factory=dict)

    def path(self, expr: str) -> Any:
        if expr == ".Release.Name":
            return RELEASE
        if expr == ".Release.Namespace":
            return NAMESPACE
        if expr.startswith(".Values."):
            node: Any = self.values
            keys = expr.removeprefix(".Values.").split(".")
        elif expr.startswith("$"):
            head, _, rest = expr[1:].partition(".")
            if head not in self.variables:
                raise Unsupported(f"unknown variable ${head}")
            node, keys = self.variables[head], rest.split(".") if rest else []
        else:
            raise Unsupported(f"not a path: {expr!r}")
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        return node

    def condition(self, expr: str) -> bool:
        words = expr.replace("(", " ( ").replace(")", " ) ").split()
        result, rest = self._operand(words)
        if rest:
            raise Unsupported(f"condition {expr!r}")
        return result

    def _operand(self, words: list[str]) -> tuple[bool, list[str]]:
        word, rest = words[0], words[1:]
        if word == "(":
            value, rest = self._operand(rest)
            if not rest or rest[0] != ")":
                raise Unsupported("unbalanced parentheses")
            return value, rest[1:]
        if word == "not":
            value, rest = self._operand(rest)
            return not value, rest
        if word in ("and", "or"):
            left, rest = self._operand(rest)
            right, rest = self._operand(rest)
            return (left and right) if word == "and" else (left or right), rest
        return _truthy(self.path(word)), rest

    def output(self, expr: str) -> str:
        stages = [stage.strip() for stage in expr.split("|")]
        first = stages[0]
        if match := re.fullmatch(r'include "([\w.]+)" \.', first):
            if match.group(1) not in self.helpers:
                raise Unsupported(f"helper {match.group(1)}")
            text = self.helpers[match.group(1)]
        elif match := re.fullmatch(r"toYaml (\S+)", first):
            value = self.path(match.group(1))
            text = yaml.safe_dump(value, default_flow_style=False, sort_keys=True).strip()
            text = text.removesuffix("\n...").strip()
        else:
            value = self.path(first)
            text = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        for stage in stages[1:]:
            if match := re.fullmatch(r"nindent (\d+)", stage):
                pad = " " * int(match.group(1))
                text = "\n" + "\n".join(pad + line if line else line for line in text.split("\n"))
            elif stage == "quote":
                text = '"' + text + '"'
            else:
                raise Unsupported(f"pipeline stage {stage!r}")
        return text


def _tokens(template: str) -> list[tuple[str, str]]:
    """("text", …) and ("action", …) pieces, with `{{-` / `-}}` trimming applied."""
    pieces: list[tuple[str, str]] = []
    position, trim_next = 0, False
    for match in ACTION.finditer(template):
        text = template[position:match.start()]
        if trim_next:
            text = text.lstrip()
        if match.group(1):
            text = text.rstrip()
        pieces.append(("text", text))
        body = match.group(2)
        if not body.startswith("/*"):
            pieces.append(("action", body))
        trim_next = bool(match.group(3))
        position = match.end()
    tail = template[position:]
    pieces.append(("text", tail.lstrip() if trim_next else tail))
    return pieces


def _run(pieces: list[tuple[str, str]], start: int, scope: _Scope, out: list[str] | None) -> tuple[int, str]:
    """Render from `start` until an `else` / `end` at this level (or the end); returns where it
    stopped and the word that stopped it. `out` None: skip (a branch not taken)."""
    index = start
    while index < len(pieces):
        kind, body = pieces[index]
        index += 1
        if kind == "text":
            if out is not None:
                out.append(body)
            continue
        if body in ("end", "else"):
            return index, body
        if body.startswith("if "):
            taken = out is not None and scope.condition(body[3:])
            index, stop = _run(pieces, index, scope, out if taken else None)
            if stop == "else":
                index, stop = _run(pieces, index, scope, out if (out is not None and not taken) else None)
            if stop != "end":
                raise Unsupported("`if` without `end`")
        elif match := re.fullmatch(r"\$(\w+) := (\S+)", body):
            if out is not None:
                scope.variables[match.group(1)] = scope.path(match.group(2))
        elif re.match(r"(range|with|define|template|block|fail|required|tpl)\b", body):
            raise Unsupported(f"{{{{ {body} }}}}")
        elif out is not None:
            out.append(scope.output(body))
    return index, "eof"


def render(template: str, values: dict[str, Any], chart: dict[str, Any]) -> list[dict[str, Any]]:
    """The template rendered with `values`, as its YAML documents (empty ones dropped)."""
    out: list[str] = []
    _, stop = _run(_tokens(template), 0, _Scope(values, _helpers(chart)), out)
    if stop != "eof":
        raise Unsupported(f"unexpected {{{{ {stop} }}}}")
    return [doc for doc in yaml.safe_load_all("".join(out)) if doc]


def load_chart(chart_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Chart.yaml and values.yaml."""
    chart, values = ((chart_dir / name).read_text() for name in ("Chart.yaml", "values.yaml"))
    return yaml.safe_load(chart), yaml.safe_load(values)


# ---------------------------------------------------------------------------- policy semantics


@dataclass(frozen=True)
class Endpoint:
    """A pod (labels, namespace) or, with `labels` None, an address outside the cluster."""

    name: str
    labels: dict[str, str] | None
    namespace: str = NAMESPACE
    ip: str = "10.244.0.10"

    @property
    def namespace_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace}


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    selector = selector or {}
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        matched = {"In": key in labels and labels[key] in values, "NotIn": labels.get(key) not in values,
                   "Exists": key in labels, "DoesNotExist": key not in labels}[operator]
        if not matched:
            return False
    return True


def _peer_matches(peer: dict[str, Any], endpoint: Endpoint, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        address = ipaddress.ip_address(endpoint.ip)
        block = peer["ipBlock"]
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(cidr) for cidr in block.get("except", []))
    if endpoint.labels is None:  # selectors match pods only
        return False
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], endpoint.namespace_labels):
            return False
    elif endpoint.namespace != policy_namespace:
        return False
    return "podSelector" not in peer or selects(peer["podSelector"], endpoint.labels)


def _port_matches(ports: list[dict[str, Any]] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        if "port" not in entry:
            return True
        if not isinstance(entry["port"], int):
            raise Unsupported(f"named port {entry['port']!r}: use numbers")
        if entry["port"] <= port <= entry.get("endPort", entry["port"]):
            return True
    return False


def _types(policy: dict[str, Any]) -> list[str]:
    spec = policy["spec"]
    return list(spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else [])))


def _side_allows(policies: list[dict[str, Any]], pod: Endpoint, peer: Endpoint, *, port: int, protocol: str,
                 direction: str) -> bool:
    assert pod.labels is not None
    relevant = [p for p in policies if p["metadata"].get("namespace", NAMESPACE) == pod.namespace
                and direction in _types(p) and selects(p["spec"]["podSelector"], pod.labels)]
    if not relevant:
        return True  # not isolated in this direction
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for policy in relevant:
        for rule in policy["spec"].get(rules_key) or []:
            peers = rule.get(peers_key)
            if (not peers or any(_peer_matches(p, peer, pod.namespace) for p in peers)) and \
                    _port_matches(rule.get("ports"), port, protocol):
                return True
    return False


def allowed(policies: list[dict[str, Any]], source: Endpoint, destination: Endpoint, port: int,
            protocol: str = "TCP") -> bool:
    if source.labels is not None and not _side_allows(policies, source, destination, port=port, protocol=protocol,
                                                      direction="Egress"):
        return False
    return destination.labels is None or _side_allows(policies, destination, source, port=port, protocol=protocol,
                                                      direction="Ingress")
