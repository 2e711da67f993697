"""``fs doctor`` and ``fs ops`` (issue #16): health checks as typed findings, proposed actions,
policy, approval, an audit log, rollback. See docs/operations.md."""

from fs_platform.doctor.checks import doctor
from fs_platform.doctor.model import Action, ActionClass, DoctorReport, Execution, Finding, OpsPlan, Severity

__all__ = ["Action", "ActionClass", "DoctorReport", "Execution", "Finding", "OpsPlan", "Severity", "doctor"]
