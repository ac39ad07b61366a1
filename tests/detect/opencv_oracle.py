"""OpenCV DNN as the oracle of a Darknet detector's boxes: its network, its region and yolo
layers' decoding, and NMS per class (cv2.dnn.NMSBoxes); only the letterbox is undone by hand.
Callers skip first when OpenCV (with readNetFromDarknet, gone in OpenCV 5) is missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlab.darknet.classify import letterbox_image, load_image_color


def opencv_rows(
    cfg: Path, weights: Path, image_path: Path, thresh: float, nms: float, net_size: int
) -> np.ndarray:
    """OpenCV's detections in one image as rows x1, y1, x2, y2, score, class (image pixels),
    for a network of net_size x net_size input fed cnnlab's letterboxed image."""
    import cv2

    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    image = load_image_color(image_path)
    _, height, width = image.shape
    net.setInput(letterbox_image(image, net_size, net_size)[None])
    found = np.concatenate(net.forward(net.getUnconnectedOutLayersNames()))
    # each row: centre x, y, width, height (of the input), objectness, class scores
    # (objectness x probability) as OpenCV's region / yolo layers compute them
    scores = np.where((found[:, 4:5] > thresh) & (found[:, 5:] > thresh), found[:, 5:], 0)
    # Darknet's letterbox: the longer side to net_size, the other in proportion (integers);
    # dog.jpg's 768 x 576 at 416 is 416 x 312, 52 grey rows above
    if width >= height:
        new_w, new_h = net_size, height * net_size // width
    else:
        new_w, new_h = width * net_size // height, net_size
    x = (found[:, 0] - (net_size - new_w) / 2 / net_size) * net_size / new_w * width
    y = (found[:, 1] - (net_size - new_h) / 2 / net_size) * net_size / new_h * height
    w = found[:, 2] * net_size / new_w * width
    h = found[:, 3] * net_size / new_h * height
    rows = []
    for cls in range(scores.shape[1]):
        index = np.flatnonzero(scores[:, cls])
        rects = [[x[i] - w[i] / 2, y[i] - h[i] / 2, w[i], h[i]] for i in index]
        for k in np.asarray(cv2.dnn.NMSBoxes(rects, scores[index, cls].tolist(), thresh, nms)):
            i = index[int(k)]
            corners = [x[i] - w[i] / 2, y[i] - h[i] / 2, x[i] + w[i] / 2, y[i] + h[i] / 2]
            rows.append([*corners, scores[i, cls], cls])
    rows = np.array(rows, dtype=np.float64).reshape(-1, 6)
    rows[:, [0, 2]] = rows[:, [0, 2]].clip(0, width)  # as cnnlab's (Darknet's print_cocos)
    rows[:, [1, 3]] = rows[:, [1, 3]].clip(0, height)
    return rows


def by_class_and_score(rows: np.ndarray) -> np.ndarray:
    """Rows ordered by class, then score (highest first): two detectors' rows side by side."""
    return rows[np.lexsort((-rows[:, 4], rows[:, 5]))]
