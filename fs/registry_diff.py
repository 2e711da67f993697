"""What ``fs plan`` / ``fs apply`` (and ``fs promote``) report: Feast's registry diff as ``Change`` rows,
without the changes that are only registry timestamps (``meta``) Feast restamps on every load."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Change:
    action: str  # create | update | delete
    kind: str  # Entity, FeatureView, ...
    name: str
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlanResult:
    changes: list[Change]
    infra_changes: list[Change]

    @property
    def empty(self) -> bool:
        return not self.changes and not self.infra_changes


@dataclass(frozen=True)
class ApplyResult:
    plan: PlanResult
    applied: bool


def changes(diffs) -> list[Change]:
    from feast.diff.registry_diff import TransitionType

    names = {
        TransitionType.CREATE: "create",
        TransitionType.UPDATE: "update",
        TransitionType.DELETE: "delete",
    }
    out = []
    for d in diffs:
        if d.transition_type not in names:
            continue
        kind = getattr(d, "feast_object_type", None) or getattr(d, "infra_object_type", "")
        props = getattr(d, "feast_object_property_diffs", None) or getattr(
            d, "infra_object_property_diffs", []
        )
        real = [p for p in props if not only_meta_differs(p.val_existing, p.val_declared)]
        if d.transition_type == TransitionType.UPDATE and props and not real:
            continue  # Feast reports the registered source's timestamps as a change: nothing to apply
        details = tuple(f"{p.property_name}: {p.val_existing} -> {p.val_declared}" for p in real)
        out.append(Change(names[d.transition_type], getattr(kind, "value", str(kind)), d.name, details))
    return out


def only_meta_differs(existing, declared) -> bool:
    """Two protobuf messages equal but for their ``meta`` fields at any depth (created / last-updated
    timestamps the registry stamps, e.g. on a feature view's batch source, a push source's own or an
    on-demand view's request source, which Feast restamps whenever it loads the view)."""
    from google.protobuf.message import Message

    if not (isinstance(existing, Message) and type(existing) is type(declared)):
        return False
    return without_meta(existing) == without_meta(declared)


def without_meta(message):
    copy = type(message)()
    copy.CopyFrom(message)
    stack = [copy]
    while stack:
        m = stack.pop()
        for desc, value in m.ListFields():
            if desc.name == "meta":
                m.ClearField("meta")
            elif desc.message_type is not None and desc.message_type.GetOptions().map_entry:
                if desc.message_type.fields_by_name["value"].message_type is not None:
                    stack.extend(value.values())  # e.g. an on-demand view's sources by name
            elif desc.message_type is not None:
                stack.extend(value if desc.is_repeated else [value])
    return copy
