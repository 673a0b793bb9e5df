"""stub"""
from gpucheck.section import SectionReport
TITLE="exporter"
def run(ctx):
    r=SectionReport(TITLE)
    r.not_checked("todo","todo")
    return r
