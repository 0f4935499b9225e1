"""Checks JSON objects against Microsoft Graph's own v1.0 schema: the cut in
tests/data/graph/graph-v1.0-contacts-calendars.csdl.xml (OData CSDL XML, read
with xml.etree; Python 3.11 stdlib only).

    import graph_schema
    s = graph_schema.load()                 # the default cut, parsed once
    s.check("user", {"id": "...", "displayName": "Ada"})   # AssertionError if wrong
    s.problems("contact", obj)              # the same as a list of strings

check(type, obj) asserts that every property of obj exists on that type (its
own or a base type's: user -> directoryObject -> entity) with a compatible
value: Edm.String a string, Edm.Boolean a bool, Edm.Int32 an int in range,
Edm.DateTimeOffset an ISO 8601 string with an offset, Edm.Guid a GUID, an enum
one of its members, a complex type an object checked the same way, a
Collection(...) an array of such, null only where the schema allows it
(Nullable="false" refuses null; a collection is never null in OData JSON).
Navigation properties may appear expanded (singleValueExtendedProperties):
their elements are checked against the target type when the cut has it.
Instance annotations ("@odata.type", "@odata.etag", "@removed",
"prop@odata.mediaEtag", ...) are not properties and are skipped, except that
"@odata.type" selects a derived type, which must derive from the one asked
for. Open types (user, contact, group, orgContact) would accept dynamic
properties in OData; this checker does not, unless allow_dynamic=True,
because an emulator or client that invents a property is wrong either way.

What the cut does NOT contain (so nothing here can check it):
- entity sets, singletons, functions and actions: no URLs, so neither /users
  nor delta() nor $batch is described; the JSON batch envelope, the OData error
  body and the identity platform's token answers are outside any CSDL;
- 43 navigation targets outside contacts and calendars (drive, team,
  appRoleAssignment, mailFolder, message, licenseDetails, ...): a navigation
  property with such a type is reported as unknown if it appears;
- annotations on capabilities (which properties support $select or $filter,
  which are returned by default): the default property sets come from the
  documentation, not from here.
It does contain user, orgContact, group, directoryObject, contact,
contactFolder, profilePhoto, singleValueLegacyExtendedProperty and every
complex and enum type they use (onPremisesExtensionAttributes, assignedLicense,
physicalOfficeAddress, phone and phoneType, emailAddress, physicalAddress).
"""
import base64
import os
import re
import xml.etree.ElementTree as ET
from datetime import datetime

HERE = os.path.dirname(os.path.abspath(__file__))
# The repository's copy of the shared cut (tests/data/graph/README.md says
# from where); ROSTER_GRAPH_CSDL names another file.
DEFAULT_CSDL = os.environ.get("ROSTER_GRAPH_CSDL") or os.path.normpath(os.path.join(
    HERE, "..", "data", "graph", "graph-v1.0-contacts-calendars.csdl.xml"))
EDM = "{http://docs.oasis-open.org/odata/ns/edm}"
GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                     r"[0-9a-fA-F]{12}$")
DTO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,7})?)?(Z|[+-]\d{2}:\d{2})$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
TIME_RE = re.compile(r"^\d{2}:\d{2}(:\d{2}(\.\d{1,12})?)?$")
DURATION_RE = re.compile(r"^-?P(\d+D)?(T(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$")
INT_RANGES = {"Edm.Byte": (0, 255), "Edm.SByte": (-128, 127), "Edm.Int16": (-2**15, 2**15 - 1),
              "Edm.Int32": (-2**31, 2**31 - 1), "Edm.Int64": (-2**63, 2**63 - 1)}


class Prop:
    def __init__(self, name, type_, nullable, navigation):
        self.name, self.type, self.nullable, self.navigation = name, type_, nullable, navigation


class TypeDef:
    def __init__(self, kind, name, base, abstract, open_, props, members):
        self.kind, self.name, self.base = kind, name, base
        self.abstract, self.open, self.props, self.members = abstract, open_, props, members


def _strip(type_name):
    """graph.user / microsoft.graph.user / #microsoft.graph.user -> user."""
    t = type_name.lstrip("#")
    for prefix in ("microsoft.graph.", "graph."):
        if t.startswith(prefix):
            return t[len(prefix):]
    return t


class Schema:
    def __init__(self, path=DEFAULT_CSDL):
        self.path = path
        root = ET.parse(path).getroot()
        schemas = [root] if root.tag == EDM + "Schema" else list(root.iter(EDM + "Schema"))
        self.types = {}
        for schema in schemas:
            for el in schema:
                tag = el.tag[len(EDM):] if el.tag.startswith(EDM) else el.tag
                if tag not in ("EntityType", "ComplexType", "EnumType"):
                    continue
                name = el.get("Name")
                props, members = {}, []
                for c in el:
                    ctag = c.tag[len(EDM):]
                    if ctag in ("Property", "NavigationProperty"):
                        props[c.get("Name")] = Prop(c.get("Name"), c.get("Type"),
                                                    c.get("Nullable") != "false",
                                                    ctag == "NavigationProperty")
                    elif ctag == "Member":
                        members.append(c.get("Name"))
                kind = {"EntityType": "entity", "ComplexType": "complex", "EnumType": "enum"}[tag]
                base = el.get("BaseType")
                self.types[name] = TypeDef(kind, name, _strip(base) if base else None,
                                           el.get("Abstract") == "true",
                                           el.get("OpenType") == "true", props, members)
                if kind == "enum":
                    self.types[name].flags = el.get("IsFlags") == "true"

    # --- questions about the schema ------------------------------------------------
    def has(self, type_name):
        return _strip(type_name) in self.types

    def chain(self, type_name):
        """The type and its base types, most derived first."""
        out, t = [], _strip(type_name)
        while t is not None:
            td = self.types.get(t)
            if td is None:
                raise KeyError(f"type {t} is not in the schema cut")
            out.append(td)
            t = td.base
        return out

    def properties(self, type_name):
        """{name: Prop} of the type including every base type's."""
        props = {}
        for td in reversed(self.chain(type_name)):
            props.update(td.props)
        return props

    def derives(self, type_name, base_name):
        return any(td.name == _strip(base_name) for td in self.chain(type_name))

    def property_type(self, type_name, prop):
        p = self.properties(type_name).get(prop)
        return None if p is None else p.type

    # --- checking ------------------------------------------------------------------
    def problems(self, type_name, obj, allow_dynamic=False, path=None):
        out = []
        self._check_object(_strip(type_name), obj, path or _strip(type_name), out, allow_dynamic)
        return out

    def check(self, type_name, obj, allow_dynamic=False):
        found = self.problems(type_name, obj, allow_dynamic)
        if found:
            raise AssertionError(f"{len(found)} schema problem(s) for {type_name}: " +
                                 "; ".join(found[:20]))

    def _check_object(self, type_name, obj, path, out, allow_dynamic):
        if not isinstance(obj, dict):
            out.append(f"{path}: expected an object of type {type_name}, got {_kind(obj)}")
            return
        if type_name not in self.types:
            out.append(f"{path}: type {type_name} is not in the schema cut")
            return
        declared = obj.get("@odata.type")
        if isinstance(declared, str) and _strip(declared) != type_name:
            actual = _strip(declared)
            if actual not in self.types:
                out.append(f"{path}: @odata.type {declared} is not in the schema cut")
                return
            if not self.derives(actual, type_name):
                out.append(f"{path}: @odata.type {declared} does not derive from {type_name}")
                return
            type_name = actual
        td = self.types[type_name]
        if td.kind == "enum":
            out.append(f"{path}: {type_name} is an enum type, not an object")
            return
        props = self.properties(type_name)
        for key, value in obj.items():
            if key.startswith("@") or "@" in key:
                continue  # instance and property annotations
            p = props.get(key)
            if p is None:
                if not allow_dynamic:
                    out.append(f"{path}.{key}: no such property on {type_name} "
                               f"(or its base types)")
                continue
            self._check_value(p.type, p.nullable, value, f"{path}.{key}", out, allow_dynamic)

    def _check_value(self, type_, nullable, value, path, out, allow_dynamic):
        m = re.match(r"^Collection\((.+)\)$", type_)
        if m:
            if not isinstance(value, list):
                out.append(f"{path}: expected an array of {m.group(1)}, got {_kind(value)}")
                return
            for i, v in enumerate(value):
                self._check_value(m.group(1), nullable, v, f"{path}[{i}]", out, allow_dynamic)
            return
        if value is None:
            if not nullable:
                out.append(f"{path}: null is not allowed ({type_} is Nullable=false)")
            return
        if type_.startswith("Edm."):
            problem = _edm_problem(type_, value)
            if problem:
                out.append(f"{path}: {problem}")
            return
        name = _strip(type_)
        td = self.types.get(name)
        if td is None:
            out.append(f"{path}: type {type_} is not in the schema cut")
        elif td.kind == "enum":
            if not isinstance(value, str):
                out.append(f"{path}: expected a {name} member name, got {_kind(value)}")
            else:
                names = [v.strip() for v in value.split(",")] if getattr(td, "flags", False) \
                    else [value]
                for n in names:
                    if n not in td.members:
                        out.append(f"{path}: '{n}' is not a member of {name} "
                                   f"({', '.join(td.members)})")
        else:
            self._check_object(name, value, path, out, allow_dynamic)


def _kind(v):
    return "null" if v is None else type(v).__name__


def _edm_problem(type_, v):
    if type_ in ("Edm.String",):
        return None if isinstance(v, str) else f"expected a string, got {_kind(v)}"
    if type_ == "Edm.Boolean":
        return None if isinstance(v, bool) else f"expected true or false, got {_kind(v)}"
    if type_ in INT_RANGES:
        lo, hi = INT_RANGES[type_]
        if isinstance(v, bool) or not isinstance(v, int):
            return f"expected an integer ({type_}), got {_kind(v)}"
        return None if lo <= v <= hi else f"{v} is out of range for {type_}"
    if type_ in ("Edm.Double", "Edm.Single", "Edm.Decimal"):
        if isinstance(v, str) and v in ("NaN", "INF", "-INF"):
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return f"expected a number ({type_}), got {_kind(v)}"
        return None
    if not isinstance(v, str):
        return f"expected a string for {type_}, got {_kind(v)}"
    if type_ == "Edm.DateTimeOffset":
        if not DTO_RE.match(v):
            return f"'{v}' is not an Edm.DateTimeOffset (ISO 8601 with Z or an offset)"
        try:
            datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            return f"'{v}' is not a valid date and time"
        return None
    if type_ == "Edm.Date":
        return None if DATE_RE.match(v) else f"'{v}' is not an Edm.Date"
    if type_ == "Edm.TimeOfDay":
        return None if TIME_RE.match(v) else f"'{v}' is not an Edm.TimeOfDay"
    if type_ == "Edm.Duration":
        return None if DURATION_RE.match(v) and v not in ("P", "PT") else \
            f"'{v}' is not an Edm.Duration"
    if type_ == "Edm.Guid":
        return None if GUID_RE.match(v) else f"'{v}' is not an Edm.Guid"
    if type_ == "Edm.Binary":
        try:
            s = v.replace("-", "+").replace("_", "/")
            base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
            return None
        except ValueError:
            return f"'{v[:20]}...' is not base64 (Edm.Binary)"
    if type_ == "Edm.Stream":
        return "an Edm.Stream is never inline JSON"
    return f"the Edm type {type_} is not known to graph_schema.py"


_CACHE = {}


def load(path=DEFAULT_CSDL):
    """The parsed schema at path (cached)."""
    if path not in _CACHE:
        _CACHE[path] = Schema(path)
    return _CACHE[path]


def check(entity_type, json_obj, allow_dynamic=False, path=DEFAULT_CSDL):
    """Asserts json_obj is a valid instance of entity_type in the default cut."""
    load(path).check(entity_type, json_obj, allow_dynamic)


if __name__ == "__main__":
    import json
    import sys
    if len(sys.argv) != 3:
        sys.exit("usage: graph_schema.py TYPE FILE.json  (checks one object or a {\"value\": []})")
    with open(sys.argv[2], encoding="utf-8") as fh:
        doc = json.load(fh)
    items = doc["value"] if isinstance(doc, dict) and isinstance(doc.get("value"), list) else [doc]
    bad = [p for it in items for p in load().problems(sys.argv[1], it)]
    print("\n".join(bad) if bad else f"{len(items)} object(s) fit {sys.argv[1]}")
    sys.exit(1 if bad else 0)
