"""An import-linter contract type the built-in ones lack: an allow-list of what modules import.

`forbidden` contracts name what must not be imported, so a new dependency slips through; this
contract names what may be. Registered in pyproject.toml ([tool.importlinter] contract_types) as
`allowed_imports`; `lint-imports` puts the working directory on sys.path, so it is found as
`tests.support.import_contracts` when run from the repository's root (as `make lint` does).

Options:
    source_modules:          the packages checked (each with its descendants); each must exist.
    allowed_modules:         what they may import (each with its descendants); need not exist yet.
    allow_standard_library:  whether the standard library may be imported too (default false).
    checked_packages:        if given, only imports of these packages are checked (the operator
                             may import any third-party package, but from `threadweaver` only
                             what is allowed); if not, every import is.

Only direct imports are checked (an allowed module's own imports are its contract's business);
imports under `if TYPE_CHECKING:` count like any other. It needs the graph built with
`include_external_packages = true`, else imports of other distributions are not in it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import grimp
from importlinter import Contract, ContractCheck, fields, output


@dataclass(frozen=True, order=True)
class _IllegalImport:
    importer: str
    imported: str
    line_numbers: tuple[int, ...]


def _within(module: str, packages: list[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


class AllowedImportsContract(Contract):
    type_name = "allowed_imports"

    source_modules = fields.ListField(subfield=fields.ModuleField())
    allowed_modules = fields.ListField(subfield=fields.ModuleField())
    allow_standard_library = fields.BooleanField(required=False, default=False)
    checked_packages = fields.ListField(subfield=fields.ModuleField(), required=False)

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        if str(self.session_options.get("include_external_packages")).lower() != "true":
            raise ValueError(
                f"{self.name}: needs include_external_packages = true in [tool.importlinter]"
            )
        allowed = [m.name for m in self.allowed_modules]
        checked = [m.name for m in self.checked_packages or []]
        illegal: list[_IllegalImport] = []
        for source in self.source_modules:
            if source.name not in graph.modules:
                raise ValueError(f"{self.name}: module {source.name} does not exist")
            for importer in sorted({source.name} | graph.find_descendants(source.name)):
                for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                    if checked and not _within(imported, checked):
                        continue
                    if _within(imported, allowed):
                        continue
                    if self.allow_standard_library and (
                        imported.split(".")[0] in sys.stdlib_module_names
                    ):
                        continue
                    details = graph.get_import_details(importer=importer, imported=imported)
                    lines = tuple(sorted({d["line_number"] for d in details}))
                    illegal.append(_IllegalImport(importer, imported, lines))
        return ContractCheck(kept=not illegal, metadata={"illegal": illegal})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for item in check.metadata["illegal"]:
            where = ", ".join(f"l.{n}" for n in item.line_numbers)
            output.print_error(f"{item.importer} -> {item.imported} ({where})", bold=False)
            output.new_line()
