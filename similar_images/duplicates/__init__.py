"""Near-duplicate finder: pairs, groups and keepers over a whole collection.

* :mod:`.pairs`: batched k-NN over every vector (through the index, exact re-ranked
  scores) and byte-identical files by content hash;
* :mod:`.groups`: the grouping rules and the keeper rule;
* :mod:`.find`: :func:`find_duplicates` and :func:`duplicates_of`, typed results;
* :mod:`.threshold`: the calibrated threshold per model and the curve math;
* :mod:`.calibration`: the generated set the thresholds are measured on;
* :mod:`.report`, :mod:`.html`: table, JSON, CSV, remove list and the HTML report.

See ``docs/duplicates.md``.
"""

from similar_images.duplicates.find import Duplicates, Group, Member, duplicates_of, find_duplicates

__all__ = ["Duplicates", "Group", "Member", "duplicates_of", "find_duplicates"]
