"""Where a policy fails: success curves, the failure region in words, regional
sensitivity and 2-D success maps (:func:`failures`, :func:`failures_from_frame`)."""

from varirec.analysis.failures.rules import Condition, FailureRule
from varirec.analysis.failures.study import FailureAnalysis, failures, failures_from_frame

__all__ = ["Condition", "FailureAnalysis", "FailureRule", "failures", "failures_from_frame"]
