// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title ERC-8004 reputation registry for the local devnet.
/// @notice Emits the deployed v1 events byte for byte, and answers the deployed read functions
/// (getSummary, readAllFeedback, getClients, getLastIndex, getResponseCount, readFeedback) with
/// the reference implementation's results, digit for digit. Input checks are deliberately light
/// (the agent must exist, valueDecimals <= 18; any int128 value) so that tests can exercise
/// extreme values; in particular an agent's owner may give it feedback. `giveLegacyFeedback`
/// emits the NewFeedback event of the earlier testnet ABI (another topic0), for testing that
/// decoder on real logs. The `*Batch` functions emit many events per transaction for benchmarks.
/// The state is laid out for cheap writes (the activity generator sends many): an agent's
/// clients are a circular list threaded through their last-index slots, and a feedback's
/// responses keep their total and their first responder's count in one slot.
/// Rebuild the artifacts with `npm run build:contracts` after editing this file.
interface IIdentityRegistry {
    function ownerOf(uint256 tokenId) external view returns (address);
}

contract ReputationRegistry {
    struct Feedback {
        int128 value;
        uint8 valueDecimals;
        bool isRevoked;
        string tag1;
        string tag2;
    }

    /// @dev One client of one agent. `next` threads the agent's clients, in the order of their
    /// first feedback, into a circular list: the newest client's `next` is the oldest. Kept in
    /// the slot the last index needs anyway, so a new client costs no slot of its own (the
    /// agent's anchor, `_newestClient`, is one slot per agent).
    struct Client {
        uint64 lastIndex;
        address next;
    }

    /// @dev The responses to one feedback. Nearly every feedback has at most one responder: its
    /// count shares the slot with the total, and later responders count in `_otherResponses`.
    struct Responses {
        address firstResponder;
        uint48 firstResponderCount;
        uint48 total;
    }

    struct FeedbackInput {
        uint256 agentId;
        int128 value;
        uint8 valueDecimals;
        string tag1;
        string tag2;
        string endpoint;
        string feedbackURI;
        bytes32 feedbackHash;
    }

    struct ResponseInput {
        uint256 agentId;
        address clientAddress;
        uint64 feedbackIndex;
        string responseURI;
        bytes32 responseHash;
    }

    event NewFeedback(
        uint256 indexed agentId,
        address indexed clientAddress,
        uint64 feedbackIndex,
        int128 value,
        uint8 valueDecimals,
        string indexed indexedTag1,
        string tag1,
        string tag2,
        string endpoint,
        string feedbackURI,
        bytes32 feedbackHash
    );
    event FeedbackRevoked(uint256 indexed agentId, address indexed clientAddress, uint64 indexed feedbackIndex);
    event ResponseAppended(
        uint256 indexed agentId,
        address indexed clientAddress,
        uint64 feedbackIndex,
        address indexed responder,
        string responseURI,
        bytes32 responseHash
    );
    /// @notice The earlier testnet ABI's feedback event (a 0-100 score and bytes32 tags).
    event NewFeedback(
        uint256 indexed agentId,
        address indexed clientAddress,
        uint8 score,
        bytes32 indexed tag1,
        bytes32 tag2,
        string fileuri,
        bytes32 filehash
    );

    address private immutable _identityRegistry;
    mapping(uint256 agentId => mapping(address client => Client)) private _clients;
    /// @dev The agent's newest client (its `next` is the oldest); see `_hasClients`.
    mapping(uint256 agentId => address) private _newestClient;
    mapping(uint256 agentId => mapping(address client => mapping(uint64 index => Feedback))) private _feedback;
    mapping(uint256 agentId => mapping(address client => mapping(uint64 index => Responses))) private _responses;
    mapping(
        uint256 agentId => mapping(address client => mapping(uint64 index => mapping(address responder => uint64)))
    ) private _otherResponses;

    constructor(address identityRegistry_) {
        require(identityRegistry_ != address(0), "bad identity registry");
        _identityRegistry = identityRegistry_;
    }

    // -- feedback ----------------------------------------------------------------------------

    function giveFeedback(
        uint256 agentId,
        int128 value,
        uint8 valueDecimals,
        string calldata tag1,
        string calldata tag2,
        string calldata endpoint,
        string calldata feedbackURI,
        bytes32 feedbackHash
    ) external {
        uint64 index = _store(agentId, value, valueDecimals, tag1, tag2);
        emit NewFeedback(
            agentId, msg.sender, index, value, valueDecimals, tag1, tag1, tag2, endpoint, feedbackURI, feedbackHash
        );
    }

    /// @notice Devnet only: giveFeedback for each item, from the caller.
    function giveFeedbackBatch(FeedbackInput[] calldata items) external {
        for (uint256 i; i < items.length; ++i) {
            FeedbackInput calldata f = items[i];
            uint64 index = _store(f.agentId, f.value, f.valueDecimals, f.tag1, f.tag2);
            emit NewFeedback(
                f.agentId,
                msg.sender,
                index,
                f.value,
                f.valueDecimals,
                f.tag1,
                f.tag1,
                f.tag2,
                f.endpoint,
                f.feedbackURI,
                f.feedbackHash
            );
        }
    }

    function _store(uint256 agentId, int128 value, uint8 valueDecimals, string calldata tag1, string calldata tag2)
        private
        returns (uint64 index)
    {
        _requireAgent(agentId);
        require(valueDecimals <= 18, "valueDecimals > 18");
        Client storage client = _clients[agentId][msg.sender];
        index = client.lastIndex + 1;
        if (index == 1) {
            _addClient(agentId, client);
        }
        client.lastIndex = index;
        Feedback storage feedback = _feedback[agentId][msg.sender][index];
        feedback.value = value;
        feedback.valueDecimals = valueDecimals;
        if (bytes(tag1).length > 0) {
            feedback.tag1 = tag1;
        }
        if (bytes(tag2).length > 0) {
            feedback.tag2 = tag2;
        }
    }

    /// @dev Appends msg.sender to the agent's circular list of clients (before its last index is set).
    function _addClient(uint256 agentId, Client storage client) private {
        if (_hasClients(agentId)) {
            Client storage newest = _clients[agentId][_newestClient[agentId]];
            client.next = newest.next;
            newest.next = msg.sender;
        } else {
            client.next = msg.sender;
        }
        _newestClient[agentId] = msg.sender;
    }

    /// @dev Whether the agent has clients: a newest client, or the zero address as the only one.
    function _hasClients(uint256 agentId) private view returns (bool) {
        address newest = _newestClient[agentId];
        return newest != address(0) || _clients[agentId][address(0)].lastIndex > 0;
    }

    /// @notice Devnet only: the earlier testnet ABI's feedback, emitted as that ABI's event.
    function giveLegacyFeedback(
        uint256 agentId,
        uint8 score,
        bytes32 tag1,
        bytes32 tag2,
        string calldata fileuri,
        bytes32 filehash
    ) external {
        _requireAgent(agentId);
        require(score <= 100, "score > 100");
        emit NewFeedback(agentId, msg.sender, score, tag1, tag2, fileuri, filehash);
    }

    // -- revocations -------------------------------------------------------------------------

    function revokeFeedback(uint256 agentId, uint64 feedbackIndex) external {
        _revoke(agentId, feedbackIndex);
    }

    /// @notice Devnet only: revokeFeedback for each (agentId, feedbackIndex) pair.
    function revokeFeedbackBatch(uint256[] calldata agentIds, uint64[] calldata feedbackIndexes) external {
        require(agentIds.length == feedbackIndexes.length, "length mismatch");
        for (uint256 i; i < agentIds.length; ++i) {
            _revoke(agentIds[i], feedbackIndexes[i]);
        }
    }

    function _revoke(uint256 agentId, uint64 feedbackIndex) private {
        require(feedbackIndex > 0 && feedbackIndex <= _clients[agentId][msg.sender].lastIndex, "no such feedback");
        Feedback storage feedback = _feedback[agentId][msg.sender][feedbackIndex];
        require(!feedback.isRevoked, "already revoked");
        feedback.isRevoked = true;
        emit FeedbackRevoked(agentId, msg.sender, feedbackIndex);
    }

    // -- responses ---------------------------------------------------------------------------

    function appendResponse(
        uint256 agentId,
        address clientAddress,
        uint64 feedbackIndex,
        string calldata responseURI,
        bytes32 responseHash
    ) external {
        _respond(agentId, clientAddress, feedbackIndex);
        emit ResponseAppended(agentId, clientAddress, feedbackIndex, msg.sender, responseURI, responseHash);
    }

    /// @notice Devnet only: appendResponse for each item, from the caller.
    function appendResponseBatch(ResponseInput[] calldata items) external {
        for (uint256 i; i < items.length; ++i) {
            ResponseInput calldata r = items[i];
            _respond(r.agentId, r.clientAddress, r.feedbackIndex);
            emit ResponseAppended(
                r.agentId, r.clientAddress, r.feedbackIndex, msg.sender, r.responseURI, r.responseHash
            );
        }
    }

    function _respond(uint256 agentId, address clientAddress, uint64 feedbackIndex) private {
        require(feedbackIndex > 0 && feedbackIndex <= _clients[agentId][clientAddress].lastIndex, "no such feedback");
        Responses storage stored = _responses[agentId][clientAddress][feedbackIndex];
        Responses memory responses = stored;
        if (responses.total == 0) {
            responses.firstResponder = msg.sender;
        }
        if (responses.firstResponder == msg.sender) {
            responses.firstResponderCount += 1;
        } else {
            _otherResponses[agentId][clientAddress][feedbackIndex][msg.sender] += 1;
        }
        responses.total += 1;
        _responses[agentId][clientAddress][feedbackIndex] = responses;
    }

    // -- reads -------------------------------------------------------------------------------

    function getLastIndex(uint256 agentId, address clientAddress) external view returns (uint64) {
        return _clients[agentId][clientAddress].lastIndex;
    }

    function readFeedback(uint256 agentId, address clientAddress, uint64 feedbackIndex)
        external
        view
        returns (int128 value, uint8 valueDecimals, string memory tag1, string memory tag2, bool isRevoked)
    {
        require(feedbackIndex > 0 && feedbackIndex <= _clients[agentId][clientAddress].lastIndex, "no such feedback");
        Feedback storage feedback = _feedback[agentId][clientAddress][feedbackIndex];
        return (feedback.value, feedback.valueDecimals, feedback.tag1, feedback.tag2, feedback.isRevoked);
    }

    /// @notice The agent's clients in the order of their first feedback to it.
    function getClients(uint256 agentId) external view returns (address[] memory) {
        return _clientsOf(agentId);
    }

    function _clientsOf(uint256 agentId) private view returns (address[] memory clients) {
        if (!_hasClients(agentId)) {
            return clients;
        }
        address oldest = _clients[agentId][_newestClient[agentId]].next;
        uint256 count;
        address client = oldest;
        do {
            ++count;
            client = _clients[agentId][client].next;
        } while (client != oldest);
        clients = new address[](count);
        for (uint256 i; i < count; ++i) {
            clients[i] = client;
            client = _clients[agentId][client].next;
        }
    }

    /// @notice Count, sum and average as the reference implementation: over the non-revoked
    /// feedback of each listed client (a client listed twice counts twice) whose tags equal the
    /// given ones (an empty tag matches any), each value scaled to 18 decimals; the sum divided by
    /// the count, then by 10^(18 - m) (both truncating toward zero), where m is the most frequent
    /// valueDecimals (the smallest on a tie), and converted to int128 as Solidity does (the
    /// high bits dropped).
    function getSummary(uint256 agentId, address[] calldata clientAddresses, string calldata tag1, string calldata tag2)
        external
        view
        returns (uint64 count, int128 summaryValue, uint8 summaryValueDecimals)
    {
        require(clientAddresses.length > 0, "clientAddresses required");
        bytes32 tag1Hash = _filterHash(tag1);
        bytes32 tag2Hash = _filterHash(tag2);
        int256 sum;
        uint64[19] memory decimalCounts;
        for (uint256 i; i < clientAddresses.length; ++i) {
            address client = clientAddresses[i];
            uint64 lastIndex = _clients[agentId][client].lastIndex;
            for (uint64 index = 1; index <= lastIndex; ++index) {
                Feedback storage feedback = _feedback[agentId][client][index];
                if (feedback.isRevoked || !_matches(feedback, tag1Hash, tag2Hash)) {
                    continue;
                }
                uint8 decimals = feedback.valueDecimals;
                sum += int256(feedback.value) * int256(10 ** uint256(18 - decimals));
                ++decimalCounts[decimals];
                ++count;
            }
        }
        if (count == 0) {
            return (0, 0, 0);
        }
        uint64 modeCount;
        for (uint8 decimals; decimals <= 18; ++decimals) {
            if (decimalCounts[decimals] > modeCount) {
                modeCount = decimalCounts[decimals];
                summaryValueDecimals = decimals;
            }
        }
        int256 average = sum / int256(uint256(count));
        summaryValue = int128(average / int256(10 ** uint256(18 - summaryValueDecimals)));
    }

    /// @notice The feedback of the listed clients (none: all the agent's clients, as getClients
    /// orders them), each client's by index, whose tags equal the given ones (an empty tag
    /// matches any); revoked feedback only with includeRevoked.
    function readAllFeedback(
        uint256 agentId,
        address[] calldata clientAddresses,
        string calldata tag1,
        string calldata tag2,
        bool includeRevoked
    )
        external
        view
        returns (
            address[] memory clients,
            uint64[] memory feedbackIndexes,
            int128[] memory values,
            uint8[] memory valueDecimals,
            string[] memory tag1s,
            string[] memory tag2s,
            bool[] memory revokedStatuses
        )
    {
        address[] memory clientList = clientAddresses.length > 0 ? clientAddresses : _clientsOf(agentId);
        bytes32 tag1Hash = _filterHash(tag1);
        bytes32 tag2Hash = _filterHash(tag2);
        uint256 total;
        for (uint256 i; i < clientList.length; ++i) {
            uint64 lastIndex = _clients[agentId][clientList[i]].lastIndex;
            for (uint64 index = 1; index <= lastIndex; ++index) {
                Feedback storage feedback = _feedback[agentId][clientList[i]][index];
                if ((includeRevoked || !feedback.isRevoked) && _matches(feedback, tag1Hash, tag2Hash)) {
                    ++total;
                }
            }
        }
        clients = new address[](total);
        feedbackIndexes = new uint64[](total);
        values = new int128[](total);
        valueDecimals = new uint8[](total);
        tag1s = new string[](total);
        tag2s = new string[](total);
        revokedStatuses = new bool[](total);
        uint256 n;
        for (uint256 i; i < clientList.length; ++i) {
            uint64 lastIndex = _clients[agentId][clientList[i]].lastIndex;
            for (uint64 index = 1; index <= lastIndex; ++index) {
                Feedback storage feedback = _feedback[agentId][clientList[i]][index];
                if ((includeRevoked || !feedback.isRevoked) && _matches(feedback, tag1Hash, tag2Hash)) {
                    clients[n] = clientList[i];
                    feedbackIndexes[n] = index;
                    values[n] = feedback.value;
                    valueDecimals[n] = feedback.valueDecimals;
                    tag1s[n] = feedback.tag1;
                    tag2s[n] = feedback.tag2;
                    revokedStatuses[n] = feedback.isRevoked;
                    ++n;
                }
            }
        }
    }

    /// @notice Responses counted as the reference implementation: to one feedback, to all of
    /// clientAddress's (feedbackIndex 0), or to all of the agent's (clientAddress zero); from the
    /// listed responders (one listed twice counts twice), or from anyone (none listed).
    function getResponseCount(
        uint256 agentId,
        address clientAddress,
        uint64 feedbackIndex,
        address[] calldata responders
    ) external view returns (uint64 count) {
        if (clientAddress == address(0)) {
            address[] memory clients = _clientsOf(agentId);
            for (uint256 i; i < clients.length; ++i) {
                count += _responsesToAll(agentId, clients[i], responders);
            }
        } else if (feedbackIndex == 0) {
            count = _responsesToAll(agentId, clientAddress, responders);
        } else {
            count = _responseCount(agentId, clientAddress, feedbackIndex, responders);
        }
    }

    function _responsesToAll(uint256 agentId, address clientAddress, address[] calldata responders)
        private
        view
        returns (uint64 count)
    {
        uint64 lastIndex = _clients[agentId][clientAddress].lastIndex;
        for (uint64 index = 1; index <= lastIndex; ++index) {
            count += _responseCount(agentId, clientAddress, index, responders);
        }
    }

    function _responseCount(
        uint256 agentId,
        address clientAddress,
        uint64 feedbackIndex,
        address[] calldata responders
    ) private view returns (uint64 count) {
        Responses memory responses = _responses[agentId][clientAddress][feedbackIndex];
        if (responders.length == 0) {
            return responses.total;
        }
        for (uint256 i; i < responders.length; ++i) {
            // No responses: firstResponder is zero, and so is a zero responder's count.
            count += responders[i] == responses.firstResponder
                ? responses.firstResponderCount
                : _otherResponses[agentId][clientAddress][feedbackIndex][responders[i]];
        }
    }

    /// @dev A tag filter's hash; zero for the empty filter, which matches any tag.
    function _filterHash(string calldata tag) private pure returns (bytes32) {
        return bytes(tag).length == 0 ? bytes32(0) : keccak256(bytes(tag));
    }

    function _matches(Feedback storage feedback, bytes32 tag1Hash, bytes32 tag2Hash) private view returns (bool) {
        return (tag1Hash == bytes32(0) || keccak256(bytes(feedback.tag1)) == tag1Hash)
            && (tag2Hash == bytes32(0) || keccak256(bytes(feedback.tag2)) == tag2Hash);
    }

    function getIdentityRegistry() external view returns (address) {
        return _identityRegistry;
    }

    function getVersion() external pure returns (string memory) {
        return "devnet-1";
    }

    function _requireAgent(uint256 agentId) private view {
        try IIdentityRegistry(_identityRegistry).ownerOf(agentId) returns (address owner) {
            require(owner != address(0), "agent does not exist");
        } catch {
            revert("agent does not exist");
        }
    }
}
