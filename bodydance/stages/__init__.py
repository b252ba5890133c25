"""The model code of the three stages, one module (or package) per stage, each with both sides.

=================  ==============================================  ===========================
stage              subject side (once per photo)                   frame side (once per frame)
=================  ==============================================  ===========================
reconstruction     ``reconstruction.subject`` (MediaPipe + fit)    ``reconstruction.frame``
parsing            ``parsing.SourceParser``                        ``parsing.ParsingPrior``
style              ``style.StyleEncoder``                          ``style.StyleGenerator``
=================  ==============================================  ===========================

The contract's :data:`bodydance_client.contract.STAGES` names the models of each side;
:mod:`.registry` maps the exported ones to these modules. Nothing is imported here, so the
python backend's reconstruction loads without torch.
"""
