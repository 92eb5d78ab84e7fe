//! A full ticket as Kapture's success example shows one (about 2 KB), for `--full-tickets`:
//! the stored fields over a realistic record, so size measurements see what real answers hold.

use serde_json::{Map, Value, json};

/// The whole ticket for a stored snapshot: its fields override the template's.
pub(crate) fn full_ticket(snapshot: &Map<String, Value>) -> Value {
    let id = snapshot
        .get("ticket_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let sub_status = snapshot
        .get("sub_status")
        .and_then(Value::as_str)
        .unwrap_or("P");
    let modified = snapshot
        .get("last_modified_date")
        .cloned()
        .unwrap_or(Value::Null);
    let mut ticket = match json!({
        "ticket_id": id,
        "ticketId": id,
        "status": if sub_status == "CL" { "Complete" } else { "Pending" },
        "sub_status": sub_status,
        "subStatusName": sub_status_name(sub_status),
        "queue": "Customer Support",
        "queueKey": "CUST_SUPPORT",
        "disposition": "",
        "priority": "Medium",
        "taskTitle": "Order not delivered - customer asking for refund status",
        "description": "Customer reports the order was marked delivered but never arrived; asked for a refund or a replacement. Courier investigation requested.",
        "ticketType": "Complaint",
        "source": "Other Source",
        "channel": "API",
        "assignedTo": {"empId": 48213, "empName": "Priya Raghavan", "email": "priya.raghavan@example.com", "teamName": "Tier 1 Support"},
        "createdBy": {"empId": 1, "empName": "Integration User", "email": "integration@example.com"},
        "customer": {
            "customerId": 90817263,
            "name": "Aarav Sharma",
            "phone": "+91-98XXXXXX21",
            "email": "aarav.sharma@example.com",
            "address": "14, 2nd Cross, Indiranagar, Bengaluru 560038",
            "customerCode": "CUST-00918273"
        },
        "createdDate": "2026-11-02 09:14:55",
        "lastModifiedDate": modified,
        "dueDate": "2026-11-05 09:14:55",
        "callbackTime": snapshot.get("callback_time").cloned().unwrap_or(Value::Null),
        "tatStatus": "Within TAT",
        "escalationLevel": 0,
        "reopenCount": 0,
        "tags": ["refund", "delivery", "priority-customer"],
        "additionalInfo": {
            "orderId": "ORD-2026-00481923",
            "orderValue": "2499.00",
            "paymentMode": "UPI",
            "courierPartner": "BlueDart",
            "awbNumber": "7839201845",
            "region": "South",
            "legacySystemId": format!("ZD-{id}")
        },
        "lastConversation": {
            "type": "comment",
            "message": snapshot.get("comment").cloned().unwrap_or(Value::Null),
            "addedBy": "Integration User",
            "addedOn": modified
        },
        "statusHistory": [
            {"status": "Open", "subStatus": "OP", "changedBy": "Integration User", "changedOn": "2026-11-02 09:14:55"},
            {"status": "Pending", "subStatus": "PE", "changedBy": "Priya Raghavan", "changedOn": "2026-11-02 11:40:12"},
            {"status": "Pending", "subStatus": "CRS", "changedBy": "Aarav Sharma", "changedOn": "2026-11-03 18:02:41"}
        ],
        "slaDetails": {"firstResponseDue": "2026-11-02 13:14:55", "resolutionDue": "2026-11-05 09:14:55", "breached": false},
        "cf_fields": {"Product Category": "Electronics", "Issue Type": "Delivery Delay", "Language": "English", "Customer Tier": "Gold"}
    }) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    // What was written wins over the template (the queue an update set, say).
    for (key, value) in snapshot {
        ticket.insert(key.clone(), value.clone());
    }
    Value::Object(ticket)
}

fn sub_status_name(key: &str) -> &'static str {
    match key {
        "P" => "Pending",
        "CL" => "Closed",
        "OP" => "Open",
        "IN" => "In Progress",
        "RS" => "Resolved",
        "PE" => "Pending External",
        "CRS" => "Customer Response Submitted",
        "CO" => "Completed",
        _ => "Other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_ticket_is_about_two_kilobytes_and_carries_the_update() {
        let snapshot = json!({"ticket_id": "600000000001", "sub_status": "CL", "comment": "done"});
        let Value::Object(snapshot) = snapshot else {
            unreachable!()
        };
        let ticket = full_ticket(&snapshot);
        let size = ticket.to_string().len();
        assert!((1800..3000).contains(&size), "{size}");
        assert_eq!(ticket["ticket_id"], "600000000001");
        assert_eq!(ticket["sub_status"], "CL");
        assert_eq!(ticket["lastConversation"]["message"], "done");
    }
}
