"""Reporting logic without Qt: the report model, audit trail, templates, drafting with the local
model, and export (HL7 ORU over MLLP through a persistent outbox, DICOM SR, PDF)."""
