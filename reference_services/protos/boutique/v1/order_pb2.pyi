from reference_services.protos import hipstershop_pb2 as _hipstershop_pb2
from reference_services.protos.boutique.v1 import events_pb2 as _events_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetOrderRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    def __init__(self, order_id: _Optional[str] = ...) -> None: ...

class ListOrdersRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListOrdersResponse(_message.Message):
    __slots__ = ("orders", "next_page_token")
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[Order]
    next_page_token: str
    def __init__(self, orders: _Optional[_Iterable[_Union[Order, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelOrderRequest(_message.Message):
    __slots__ = ("order_id", "reason")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    reason: str
    def __init__(self, order_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class UpdateOrderStatusRequest(_message.Message):
    __slots__ = ("order_id", "status", "reason")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    status: _events_pb2.OrderStatus
    reason: str
    def __init__(self, order_id: _Optional[str] = ..., status: _Optional[_Union[_events_pb2.OrderStatus, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class StatusChange(_message.Message):
    __slots__ = ("from_status", "to_status", "at", "reason", "trace_id")
    FROM_STATUS_FIELD_NUMBER: _ClassVar[int]
    TO_STATUS_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    from_status: _events_pb2.OrderStatus
    to_status: _events_pb2.OrderStatus
    at: str
    reason: str
    trace_id: str
    def __init__(self, from_status: _Optional[_Union[_events_pb2.OrderStatus, str]] = ..., to_status: _Optional[_Union[_events_pb2.OrderStatus, str]] = ..., at: _Optional[str] = ..., reason: _Optional[str] = ..., trace_id: _Optional[str] = ...) -> None: ...

class Order(_message.Message):
    __slots__ = ("id", "user_id", "email", "items", "shipping_cost", "total", "currency", "shipping_address", "tracking_id", "status", "history", "placed_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_COST_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TRACKING_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    PLACED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    user_id: str
    email: str
    items: _containers.RepeatedCompositeFieldContainer[_events_pb2.OrderLine]
    shipping_cost: _hipstershop_pb2.Money
    total: _hipstershop_pb2.Money
    currency: str
    shipping_address: _hipstershop_pb2.Address
    tracking_id: str
    status: _events_pb2.OrderStatus
    history: _containers.RepeatedCompositeFieldContainer[StatusChange]
    placed_at: str
    def __init__(self, id: _Optional[str] = ..., user_id: _Optional[str] = ..., email: _Optional[str] = ..., items: _Optional[_Iterable[_Union[_events_pb2.OrderLine, _Mapping]]] = ..., shipping_cost: _Optional[_Union[_hipstershop_pb2.Money, _Mapping]] = ..., total: _Optional[_Union[_hipstershop_pb2.Money, _Mapping]] = ..., currency: _Optional[str] = ..., shipping_address: _Optional[_Union[_hipstershop_pb2.Address, _Mapping]] = ..., tracking_id: _Optional[str] = ..., status: _Optional[_Union[_events_pb2.OrderStatus, str]] = ..., history: _Optional[_Iterable[_Union[StatusChange, _Mapping]]] = ..., placed_at: _Optional[str] = ...) -> None: ...
